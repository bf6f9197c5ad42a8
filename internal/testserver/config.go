package testserver

import "strings"

// Config is the server's YAML config as nested maps. The rig deliberately
// does not import the config package (internal/ sits below it in the
// layering): it writes keys, and the server, which refuses unknown keys,
// is the judge of the schema.
type Config map[string]any

// Set sets a value by dotted path ("database.engine"), creating sections.
func (c Config) Set(path string, v any) {
	keys := strings.Split(path, ".")
	m := map[string]any(c)
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
}

// Get returns the value at a dotted path, or nil.
func (c Config) Get(path string) any {
	keys := strings.Split(path, ".")
	m := map[string]any(c)
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m[keys[len(keys)-1]]
}
