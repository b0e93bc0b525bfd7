package webhook_test

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/events"
)

// A receiver checks every call before it trusts the body. During a
// rotation it lists both secrets; the sender signs with both too.
func ExampleVerify() {
	secrets := [][]byte{[]byte("the-new-secret-of-32-bytes......"), []byte("the-old-secret-of-32-bytes......")}
	var mu sync.Mutex
	seen := map[string]bool{} // block ids already handled: a call may come twice
	http.HandleFunc("POST /defender", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secrets, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // a 4xx: not retried
			return
		}
		var msg struct {
			Blocks []events.Block `json:"blocks"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, b := range msg.Blocks {
			if !seen[b.ID] {
				seen[b.ID] = true
				log.Printf("%s %s %q", b.Type, b.Kind, b.Subject)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
