package fleet

import (
	"sync"

	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
)

// maxShapes bounds the distinct structures the registry shares. A fleet runs a handful; past the bound the
// table starts over, and the agents keep the shapes they hold.
const maxShapes = 256

// shapeTable shares one Shape among the agents whose effective configs have the same structure. Each
// agent's effective config is parsed (the supervisor writes the agent's own instance UID and PID into it,
// so no two are the same text), but 10,000 agents running one config keep one copy of its structure, not
// 10,000 (about 5 KB each). Shapes are never modified once parsed.
type shapeTable struct {
	mu sync.Mutex
	m  map[string]*collectorconfig.Shape
}

// intern returns the table's shape with s's structure, s itself the first time.
func (t *shapeTable) intern(s *collectorconfig.Shape) *collectorconfig.Shape {
	key := s.Key()
	t.mu.Lock()
	defer t.mu.Unlock()
	if known, ok := t.m[key]; ok {
		return known
	}
	if t.m == nil || len(t.m) >= maxShapes {
		t.m = map[string]*collectorconfig.Shape{}
	}
	t.m[key] = s
	return s
}
