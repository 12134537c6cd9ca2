package model

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

func stFile(header string, data int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, data)...)
}

func TestSafetensorsRoundTrip(t *testing.T) {
	ts := map[string]SafeTensor{
		"a":      {Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, 0, 1e-20, -7}},
		"scalar": {Shape: []int{}, Data: []float32{42}},
		"empty":  {Shape: []int{0, 4}, Data: []float32{}},
	}
	for _, bf16 := range []bool{false, true} {
		raw, err := EncodeSafetensors(ts, map[string]string{"k": "v"}, bf16)
		if err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint64(raw)%8 != 0 {
			t.Fatalf("header not padded to 8 bytes")
		}
		got, meta, err := DecodeSafetensors(raw)
		if err != nil {
			t.Fatal(err)
		}
		if meta["k"] != "v" || len(got) != 3 {
			t.Fatalf("meta %v, %d tensors", meta, len(got))
		}
		for n, want := range ts {
			g := got[n]
			if !equalShape(g.Shape, want.Shape) || len(g.Data) != len(want.Data) {
				t.Fatalf("%s: shape %v", n, g.Shape)
			}
			for i := range want.Data {
				w := want.Data[i]
				if bf16 {
					w = math.Float32frombits(uint32(f32ToBF16(w)) << 16)
				}
				if g.Data[i] != w {
					t.Fatalf("bf16=%v %s[%d] = %v, want %v", bf16, n, i, g.Data[i], w)
				}
			}
		}
	}
}

func TestHalfConversions(t *testing.T) {
	cases := []struct {
		h    uint16
		want float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 5.960464477539063e-08}, {0x0400, 6.103515625e-05},
		{0x3555, 0.333251953125}, {0x8000, float32(math.Copysign(0, -1))}, {0x7c00, float32(math.Inf(1))},
	}
	for _, c := range cases {
		if got := f16ToF32(c.h); got != c.want || math.Signbit(float64(got)) != math.Signbit(float64(c.want)) {
			t.Errorf("f16 %#04x = %v, want %v", c.h, got, c.want)
		}
	}
	// BF16 rounds to nearest even: 1+2^-8 is a tie and goes down to 1,
	// 1+3·2^-8 goes up to 1+2^-6.
	if f32ToBF16(1+1.0/256) != 0x3f80 || f32ToBF16(1+3.0/256) != 0x3f82 {
		t.Errorf("bf16 rounding: %#x %#x", f32ToBF16(1+1.0/256), f32ToBF16(1+3.0/256))
	}
	// An F16 file decodes.
	raw := stFile(`{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, 0)
	raw = append(raw, 0x00, 0x3c, 0x00, 0xc0)
	ts, _, err := DecodeSafetensors(raw)
	if err != nil || ts["x"].Data[0] != 1 || ts["x"].Data[1] != -2 {
		t.Fatalf("F16 decode: %v %v", ts, err)
	}
}

func TestSafetensorsRejects(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		msg  string
	}{
		{"short", []byte{1, 2, 3}, "shorter"},
		{"header past end", binary.LittleEndian.AppendUint64(nil, 1000), "out of range"},
		{"not json", stFile(`[1,2]   `, 0), "not a JSON object"},
		{"bad json", stFile(`{"a":`, 0), "header"},
		{"unknown dtype", stFile(`{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}`, 1), "unknown dtype"},
		{"size mismatch", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "bytes for"},
		{"out of bounds", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), "outside"},
		{"reversed offsets", stFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), "outside"},
		{"overlap", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "contiguous"},
		{"hole", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "contiguous"},
		{"trailing", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "trailing"},
		{"negative dim", stFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0), "bad shape"},
		{"huge dims", stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0), "bad shape"},
		{"extra field", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), "unknown field"},
		{"bad metadata", stFile(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
		{"int tensor", stFile(`{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, 4), "not convertible"},
	}
	for _, c := range cases {
		_, _, err := DecodeSafetensors(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.msg)
		}
	}
}

// FuzzSafetensorsHeader: the parser never panics, and whatever it accepts
// lies inside the file and decodes.
func FuzzSafetensorsHeader(f *testing.F) {
	good, _ := EncodeSafetensors(map[string]SafeTensor{"a": {Shape: []int{2}, Data: []float32{1, 2}}, "b": {Shape: []int{1, 1}, Data: []float32{3}}}, map[string]string{"format": "pt"}, false)
	f.Add(good)
	f.Add(stFile(`{"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, 4))
	f.Add(stFile(`{}`, 0))
	f.Fuzz(func(t *testing.T, raw []byte) {
		entries, _, start, err := parseSafetensorsHeader(raw, int64(len(raw)))
		if err != nil {
			return
		}
		for name, e := range entries {
			if start+e.DataOffsets[1] > int64(len(raw)) || e.DataOffsets[0] < 0 {
				t.Fatalf("accepted %q with offsets %v outside %d bytes", name, e.DataOffsets, len(raw))
			}
		}
		_, _, _ = DecodeSafetensors(raw)
	})
}
