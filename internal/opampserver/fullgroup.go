package opampserver

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// Refusing a full ManagedCollector at the upgrade.
//
// A new instance UID is refused at its first message when its ManagedCollector holds spec.maxCollectors
// already: only there is the UID known. opamp-go's WebSocket client, the supervisor's, reconnects at once
// when the server closes a connection after an error response (it honours Retry-After only on a refused
// upgrade), so one credential presenting thousands of new UIDs came back 2,500 times a second for as long
// as it lasted, and slowed every other collector's round trips fifty-fold. After such a refusal, further
// upgrades with the same credential from the same address are answered 503 with Retry-After, before any
// WebSocket, for fullGroupWindow and while the ManagedCollector is still full. Only a refusal at a first
// message starts the window, so once it ends the next refusal, or an admission, decides again: a collector
// the ManagedCollector already holds, reconnecting from that address, gets in then.
const (
	fullGroupWindow = 10 * time.Second
	// maxFullGroupEntries bounds the memory; past it the table starts over.
	maxFullGroupEntries = 4096
)

// fullGroupRefusals remembers when a credential was last refused at an address for a full group.
type fullGroupRefusals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func fullGroupKey(p *credential.Principal, remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return p.Fingerprint + " " + host
}

// refused records a refusal for a full group now.
func (f *fullGroupRefusals) refused(key string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == nil || len(f.at) >= maxFullGroupEntries {
		f.at = map[string]time.Time{}
	}
	f.at[key] = now
}

// recent tells whether key was refused within fullGroupWindow of now.
func (f *fullGroupRefusals) recent(key string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.at[key]
	if ok && now.Sub(at) >= fullGroupWindow {
		delete(f.at, key)
		return false
	}
	return ok
}

// refuseFull answers an upgrade 503 with a Retry-After of 5 to 15 s, spread so that the refused do not come
// back together.
func refuseFull(w http.ResponseWriter, p *credential.Principal) {
	w.Header().Set("Retry-After", strconv.Itoa(5+rand.IntN(11)))
	w.Header().Set("Connection", "close")
	http.Error(w, "ManagedCollector "+p.Collector.String()+" already holds as many collectors as it may "+
		"(spec.maxCollectors); retry later", http.StatusServiceUnavailable)
}
