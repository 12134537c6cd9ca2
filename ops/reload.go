package ops

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Change is the outcome of a configuration reload.
type Change struct {
	// Config is the new configuration, with only live keys taken from the
	// file: keys that need a restart keep their running values.
	Config Config
	// Live are the changed keys that were applied.
	Live []string
	// NeedRestart are the changed keys that take effect only after a restart.
	NeedRestart []string
	// Err is set when the file could not be read or is invalid; nothing
	// changes then.
	Err error
}

// Watch reloads the configuration whenever the loader's file changes and calls
// fn with the result, until ctx ends. It watches the file's directory, so
// editors that save by rename are seen. viper's WatchConfig is not used: its
// goroutine cannot be stopped and it swallows parse errors.
func Watch(ctx context.Context, l Loader, current Config, fn func(Change)) error {
	if l.File == "" {
		return fmt.Errorf("watch config: no file to watch")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer w.Close()
	file := filepath.Clean(l.File)
	if err := w.Add(filepath.Dir(file)); err != nil {
		return fmt.Errorf("watch config %s: %w", file, err)
	}
	// Editors write in bursts; settle for a moment before reading.
	const settle = 100 * time.Millisecond
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == file && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer = time.After(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			fn(Change{Config: current, Err: fmt.Errorf("watch config: %w", err)})
		case <-timer:
			timer = nil
			ch := Reload(l, current)
			if ch.Err == nil {
				current = ch.Config
			}
			fn(ch)
		}
	}
}

// Reload reads the configuration again and splits the changes into live keys
// (applied) and keys that need a restart (reported, not applied).
func Reload(l Loader, current Config) Change {
	next, err := l.Load()
	if err != nil {
		return Change{Config: current, Err: fmt.Errorf("reload %s: %w", l.File, err)}
	}
	merged := current
	var ch Change
	for _, key := range changedKeys(current, next) {
		if IsLiveKey(key) {
			ch.Live = append(ch.Live, key)
			setKey(&merged, key, getKey(next, key))
		} else {
			ch.NeedRestart = append(ch.NeedRestart, key)
		}
	}
	ch.Config = merged
	return ch
}

func changedKeys(a, b Config) []string {
	ka, kb := map[string]any{}, map[string]any{}
	walkKeys(reflect.ValueOf(a), "", ka)
	walkKeys(reflect.ValueOf(b), "", kb)
	var out []string
	for k, va := range ka {
		if !reflect.DeepEqual(va, kb[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func fieldByKey(v reflect.Value, key string) reflect.Value {
	for key != "" {
		name, rest, _ := cut(key)
		t := v.Type()
		found := false
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("mapstructure") == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}
		}
		key = rest
	}
	return v
}

func cut(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func getKey(c Config, key string) any { return fieldByKey(reflect.ValueOf(c), key).Interface() }

func setKey(c *Config, key string, val any) {
	fieldByKey(reflect.ValueOf(c).Elem(), key).Set(reflect.ValueOf(val))
}
