package gpu

import "testing"

func TestSegments(t *testing.T) {
	uniq, start, order := buildSegments([]int32{5, 2, 5, 7, 2, 5})
	want := [][]int32{{2, 5, 7}, {0, 2, 5, 6}, {1, 4, 0, 2, 5, 3}}
	for i, got := range [][]int32{uniq, start, order} {
		if len(got) != len(want[i]) {
			t.Fatalf("got %v, want %v", got, want[i])
		}
		for j := range got {
			if got[j] != want[i][j] {
				t.Fatalf("got %v, want %v", got, want[i])
			}
		}
	}
}
