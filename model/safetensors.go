package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"replayd/internal/atomicfs"
	"sort"
)

// SafeTensor is one tensor of a safetensors file, converted to float32.
type SafeTensor struct {
	Shape []int
	Data  []float32
}

// stEntry is a header entry as it appears in the file.
type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// maxHeaderLen bounds the JSON header so a corrupt length cannot make the
// reader allocate gigabytes (the reference implementation uses 100 MB).
const maxHeaderLen = 100 << 20

// dtypeSize gives the byte width of the dtypes this reader converts.
var dtypeSize = map[string]int{"F32": 4, "F16": 2, "BF16": 2}

// parseSafetensorsHeader validates the header of a safetensors file of
// fileLen bytes and returns the entries, the metadata and the start of the
// data section. Offsets must be in bounds, consistent with dtype and shape,
// and the tensors must tile the data section exactly without overlapping.
func parseSafetensorsHeader(head []byte, fileLen int64) (map[string]stEntry, map[string]string, int64, error) {
	if len(head) < 8 || fileLen < 8 {
		return nil, nil, 0, errors.New("safetensors: file shorter than 8 bytes")
	}
	n := binary.LittleEndian.Uint64(head[:8])
	if n > maxHeaderLen || int64(n) > fileLen-8 {
		return nil, nil, 0, fmt.Errorf("safetensors: header length %d out of range", n)
	}
	if int64(len(head)) < 8+int64(n) {
		return nil, nil, 0, errors.New("safetensors: truncated header")
	}
	hdr := head[8 : 8+n]
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, nil, 0, errors.New("safetensors: header is not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return nil, nil, 0, fmt.Errorf("safetensors: header: %w", err)
	}
	dataStart := 8 + int64(n)
	dataLen := fileLen - dataStart
	entries := make(map[string]stEntry, len(raw))
	var meta map[string]string
	type span struct{ a, b int64 }
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, 0, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e stEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		size, ok := dtypeSize[e.DType]
		if !ok {
			if _, known := otherDtypes[e.DType]; !known {
				return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, e.DType)
			}
			size = otherDtypes[e.DType]
		}
		elems := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && elems > math.MaxInt64/int64(d)/8) {
				return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: bad shape %v", name, e.Shape)
			}
			elems *= int64(d)
		}
		a, b := e.DataOffsets[0], e.DataOffsets[1]
		if a < 0 || b < a || b > dataLen {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: offsets [%d,%d) outside data of %d bytes", name, a, b, dataLen)
		}
		if b-a != elems*int64(size) {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: %d bytes for %v %s", name, b-a, e.Shape, e.DType)
		}
		entries[name] = e
		spans = append(spans, span{a, b})
	}
	// The format requires the buffers to cover the data section without
	// holes or overlaps; checking it catches truncated or spliced files.
	sort.Slice(spans, func(i, j int) bool {
		// Empty tensors sit at the start of the next one: order by end too.
		return spans[i].a < spans[j].a || (spans[i].a == spans[j].a && spans[i].b < spans[j].b)
	})
	var at int64
	for _, s := range spans {
		if s.a != at {
			return nil, nil, 0, fmt.Errorf("safetensors: data not contiguous at byte %d", at)
		}
		at = s.b
	}
	if at != dataLen {
		return nil, nil, 0, fmt.Errorf("safetensors: %d trailing bytes after tensor data", dataLen-at)
	}
	return entries, meta, dataStart, nil
}

// otherDtypes are legal safetensors dtypes we validate but do not convert.
var otherDtypes = map[string]int{"F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}

// ReadSafetensors reads a safetensors file and converts F32, F16 and BF16
// tensors to float32. Tensors of other dtypes are an error.
func ReadSafetensors(path string) (map[string]SafeTensor, map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read safetensors: %w", err)
	}
	ts, meta, err := DecodeSafetensors(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ts, meta, nil
}

// DecodeSafetensors decodes a whole safetensors file held in memory.
func DecodeSafetensors(raw []byte) (map[string]SafeTensor, map[string]string, error) {
	entries, meta, start, err := parseSafetensorsHeader(raw, int64(len(raw)))
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]SafeTensor, len(entries))
	for name, e := range entries {
		buf := raw[start+e.DataOffsets[0] : start+e.DataOffsets[1]]
		t := SafeTensor{Shape: append([]int(nil), e.Shape...)}
		switch e.DType {
		case "F32":
			t.Data = make([]float32, len(buf)/4)
			for i := range t.Data {
				t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
			}
		case "BF16":
			t.Data = make([]float32, len(buf)/2)
			for i := range t.Data {
				t.Data[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(buf[2*i:])) << 16)
			}
		case "F16":
			t.Data = make([]float32, len(buf)/2)
			for i := range t.Data {
				t.Data[i] = f16ToF32(binary.LittleEndian.Uint16(buf[2*i:]))
			}
		default:
			return nil, nil, fmt.Errorf("safetensors: tensor %q: dtype %s not convertible to float32", name, e.DType)
		}
		out[name] = t
	}
	return out, meta, nil
}

// f16ToF32 converts an IEEE half to float32 exactly (subnormals included).
func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: value = man * 2^-24
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			return -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// f32ToBF16 rounds to nearest even, as torch does.
func f32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// EncodeSafetensors serialises tensors as F32 (or BF16 when bf16 is set),
// in name order so the output is deterministic.
func EncodeSafetensors(tensors map[string]SafeTensor, meta map[string]string, bf16 bool) ([]byte, error) {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if n == "__metadata__" {
			return nil, errors.New("safetensors: tensor name __metadata__ is reserved")
		}
		names = append(names, n)
	}
	sort.Strings(names)
	dtype, size := "F32", 4
	if bf16 {
		dtype, size = "BF16", 2
	}
	header := make(map[string]any, len(names)+1)
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		elems := 1
		for _, d := range t.Shape {
			elems *= d
		}
		if elems != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v holds %d values, have %d", n, t.Shape, elems, len(t.Data))
		}
		end := off + int64(elems*size)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = stEntry{DType: dtype, Shape: shape, DataOffsets: [2]int64{off, end}}
		off = end
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	// Pad the header with spaces to 8 bytes so the data is aligned, as the
	// reference writer does.
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	out := make([]byte, 8, 8+len(hj)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(hj)))
	out = append(out, hj...)
	for _, n := range names {
		for _, v := range tensors[n].Data {
			if bf16 {
				out = binary.LittleEndian.AppendUint16(out, f32ToBF16(v))
			} else {
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
			}
		}
	}
	return out, nil
}

// WriteSafetensors writes tensors to path atomically.
func WriteSafetensors(path string, tensors map[string]SafeTensor, meta map[string]string, bf16 bool) error {
	raw, err := EncodeSafetensors(tensors, meta, bf16)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfs.WriteFile(path, raw)
}
