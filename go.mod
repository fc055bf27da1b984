module github.com/qscheduler-swarming/qscheduler-swarming

go 1.26

tool (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require google.golang.org/protobuf v1.36.12

require (
	github.com/google/go-cmp v0.7.0 // indirect
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
