package gpu

import "slices"

// buildSegments is a stable sort of the row indices of tokens by token, so each
// token's rows stay in order: the device then sums them in the order the
// CPU backend does, without atomics.
func buildSegments(tokens []int32) (uniq, start, order []int32) {
	idx := make([]int32, len(tokens))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortStableFunc(idx, func(a, b int32) int { return int(tokens[a]) - int(tokens[b]) })
	for i, r := range idx {
		if i == 0 || tokens[r] != tokens[idx[i-1]] {
			uniq = append(uniq, tokens[r])
			start = append(start, int32(i))
		}
	}
	start = append(start, int32(len(idx)))
	return uniq, start, idx
}
