package syncapi

import (
	"encoding/json"
	"reflect"
	"testing"

	"myelin/internal/apierr"
)

func TestSearchCriteria(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		errcode string
		types   []string
		groupBy []string
	}{
		{"defaults", `{"search_term":"x"}`, "", []string{"m.room.message", "m.room.name", "m.room.topic"}, nil},
		{"keys", `{"search_term":"x","keys":["content.name","content.name"]}`, "", []string{"m.room.name"}, nil},
		{"filter types narrow keys", `{"search_term":"x","filter":{"types":["m.room.t*"]}}`, "", []string{"m.room.topic"}, nil},
		{"filter not_types", `{"search_term":"x","filter":{"not_types":["m.room.message"]}}`, "", []string{"m.room.name", "m.room.topic"}, nil},
		{"groupings", `{"search_term":"x","groupings":{"group_by":[{"key":"sender"},{"key":"room_id"}]}}`, "", []string{"m.room.message", "m.room.name", "m.room.topic"}, []string{"room_id", "sender"}},
		{"missing term", `{}`, "M_BAD_JSON", nil, nil},
		{"bad order", `{"search_term":"x","order_by":"old"}`, "M_INVALID_PARAM", nil, nil},
		{"bad key", `{"search_term":"x","keys":["content.url"]}`, "M_INVALID_PARAM", nil, nil},
		{"bad group", `{"search_term":"x","groupings":{"group_by":[{"key":"type"}]}}`, "M_INVALID_PARAM", nil, nil},
		{"negative after", `{"search_term":"x","event_context":{"after_limit":-2}}`, "M_INVALID_PARAM", nil, nil},
		{"negative filter limit", `{"search_term":"x","filter":{"limit":-1}}`, "M_BAD_JSON", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c RoomEventsCriteria
			if err := json.Unmarshal([]byte(tc.body), &c); err != nil {
				t.Fatal(err)
			}
			err := c.validate()
			if tc.errcode != "" {
				if e, ok := apierr.As(err); !ok || e.Code != tc.errcode {
					t.Fatalf("got %v, want %s", err, tc.errcode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.types, tc.types) {
				t.Fatalf("types %v, want %v", c.types, tc.types)
			}
			for _, k := range tc.groupBy {
				if !c.groupBy[k] {
					t.Fatalf("group_by %v lacks %s", c.groupBy, k)
				}
			}
		})
	}
}

func TestSearchCursor(t *testing.T) {
	for _, byRank := range []bool{true, false} {
		c := searchCursor{byRank: byRank, value: 42}
		got, err := parseSearchCursor(c.String(), byRank)
		if err != nil || got != c {
			t.Fatalf("round trip %+v: %+v %v", c, got, err)
		}
		if _, err := parseSearchCursor(c.String(), !byRank); err == nil {
			t.Fatalf("cursor for byRank=%v accepted for the other order", byRank)
		}
	}
	for _, bad := range []string{"", "x", "czE6cjo", "czE6cjow", "czE6cjotMQ", "czE6cjo5OTk5OTk5OTk5OTk"} {
		if _, err := parseSearchCursor(bad, true); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzSearchCursor: any next_batch either fails with M_INVALID_PARAM or
// round-trips to itself.
func FuzzSearchCursor(f *testing.F) {
	f.Add("czE6cjoxMA", true)
	f.Add("czE6bjo1", false)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, s string, byRank bool) {
		c, err := parseSearchCursor(s, byRank)
		if err != nil {
			if e, ok := apierr.As(err); !ok || e.Code != "M_INVALID_PARAM" {
				t.Fatalf("error %v", err)
			}
			return
		}
		if c.value <= 0 || c.byRank != byRank {
			t.Fatalf("cursor %+v from %q", c, s)
		}
		if again, err := parseSearchCursor(c.String(), byRank); err != nil || again != c {
			t.Fatalf("re-encoding %+v: %+v %v", c, again, err)
		}
	})
}

// FuzzSearchCriteria: any room_events body validates or fails with a
// client error, never a panic.
func FuzzSearchCriteria(f *testing.F) {
	f.Add(`{"search_term":"x","keys":["content.body"],"filter":{"types":["*"]},"groupings":{"group_by":[{"key":"room_id"}]}}`)
	f.Add(`{"search_term":"x","event_context":{"before_limit":1}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var c RoomEventsCriteria
		if json.Unmarshal([]byte(body), &c) != nil {
			return
		}
		if err := c.validate(); err != nil {
			if e, ok := apierr.As(err); !ok || e.Status != 400 {
				t.Fatalf("error %v", err)
			}
		}
	})
}
