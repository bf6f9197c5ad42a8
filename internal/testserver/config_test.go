package testserver

import (
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigSetGet(t *testing.T) {
	c := Config{}
	c.Set("server_name", "a.test")
	c.Set("database.engine", "postgres")
	c.Set("database.dsn", "x")
	c.Set("database.engine", "sqlite") // overwrite keeps siblings
	c.Set("listeners.federation", "")

	tests := []struct {
		path string
		want any
	}{
		{"server_name", "a.test"},
		{"database.engine", "sqlite"},
		{"database.dsn", "x"},
		{"listeners.federation", ""},
		{"listeners.client", nil},
		{"nope.deeper.still", nil},
		{"server_name.child", nil}, // a scalar is not a section
	}
	for _, tt := range tests {
		if got := c.Get(tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Get(%q) = %#v, want %#v", tt.path, got, tt.want)
		}
	}

	b, err := yaml.Marshal(map[string]any(c))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"server_name": "a.test",
		"database":    map[string]any{"engine": "sqlite", "dsn": "x"},
		"listeners":   map[string]any{"federation": ""},
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("YAML round trip = %#v, want %#v", back, want)
	}
}
