package scheduler

import "slices"

// trieNode indexes base label sets by their ascending label ids, so that the
// sets contained in a worker's labels are found by walking only the paths the
// worker's labels spell, never by scanning every set (SCHEDULER.md §6).
type trieNode struct {
	label  labelID
	parent *trieNode
	kids   []*trieNode
	byID   map[labelID]*trieNode // when kids is large
	bi     *baseIndex            // the set ending here, if any
}

const trieMapThreshold = 8

func (n *trieNode) child(l labelID) *trieNode {
	if n.byID != nil {
		return n.byID[l]
	}
	for _, k := range n.kids {
		if k.label == l {
			return k
		}
	}
	return nil
}

func (n *trieNode) insert(bi *baseIndex) {
	for _, l := range bi.set.ids {
		k := n.child(l)
		if k == nil {
			k = &trieNode{label: l, parent: n}
			n.kids = append(n.kids, k)
			if n.byID != nil {
				n.byID[l] = k
			} else if len(n.kids) > trieMapThreshold {
				n.byID = make(map[labelID]*trieNode, len(n.kids))
				for _, x := range n.kids {
					n.byID[x.label] = x
				}
			}
		}
		n = k
	}
	n.bi = bi
	bi.node = n
}

func (n *trieNode) remove(bi *baseIndex) {
	m := bi.node
	m.bi = nil
	bi.node = nil
	for m.parent != nil && m.bi == nil && len(m.kids) == 0 {
		p := m.parent
		i := slices.Index(p.kids, m)
		p.kids = slices.Delete(p.kids, i, i+1)
		if p.byID != nil {
			delete(p.byID, m.label)
			if len(p.kids) <= trieMapThreshold/2 {
				p.byID = nil
			}
		}
		m = p
	}
}

// collect appends to out every base index whose set is contained in ids
// (ascending). The label table must have ids marked.
func (n *trieNode) collect(t *labelTable, ids []labelID, out []*baseIndex) []*baseIndex {
	if n.bi != nil {
		out = append(out, n.bi)
	}
	if len(n.kids) == 0 || len(ids) == 0 {
		return out
	}
	if len(n.kids) <= len(ids) {
		for _, k := range n.kids {
			if t.has(k.label) {
				i, _ := slices.BinarySearch(ids, k.label)
				out = k.collect(t, ids[i+1:], out)
			}
		}
		return out
	}
	for i, l := range ids {
		if k := n.child(l); k != nil {
			out = k.collect(t, ids[i+1:], out)
		}
	}
	return out
}
