package gate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// DeviceCookie is the cookie in which Middleware keeps a browser's device
// token (smart lockout).
const DeviceCookie = "defender_device"

// deviceIDBytes and deviceMACBytes size a device token: a random id and
// its truncated HMAC-SHA256 under Config.DeviceKey.
const (
	deviceIDBytes  = 16
	deviceMACBytes = 16
)

// NewDevice returns a new device token: a random id signed with the
// gate's device key (DEFENDER_DEVICE_KEY), for Attempt.Device. A browser
// or app install keeps it (Middleware sets DeviceCookie); once it logged
// in as a user it is a source familiar to that user (smart lockout), from
// whatever address it comes.
func (g *Gate) NewDevice() string {
	id := make([]byte, deviceIDBytes)
	_, _ = rand.Read(id)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(id) + "." + enc.EncodeToString(g.deviceMAC(id))
}

// Device returns token if it is a device token signed with the gate's key,
// else a new one (NewDevice), and whether it is new: with smart lockout
// (DEFENDER_FAMILIAR_DAYS), give it to the attempt, and to the client
// after a success, so that its later logins come from a familiar source.
// "" and false when smart lockout is off.
func (g *Gate) Device(token string) (string, bool) {
	if !g.cfg.SmartLockout {
		return "", false
	}
	if _, ok := g.deviceID(token); ok {
		return token, false
	}
	return g.NewDevice(), true
}

// SetDeviceCookie gives the browser of r the device token (DeviceCookie,
// HttpOnly, SameSite=Lax, Secure over TLS), for as long as a source stays
// familiar (DEFENDER_FAMILIAR_DAYS).
func (g *Gate) SetDeviceCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{Name: DeviceCookie, Value: token, Path: "/",
		MaxAge: int(g.cfg.FamiliarFor.Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// deviceSource is a device's source in a user's familiar set.
func deviceSource(id string) string { return "dev:" + id }

// deviceID returns the id of a device token signed with the gate's key.
// A token altered, forged or signed with another key is no device.
func (g *Gate) deviceID(token string) (string, bool) {
	idPart, macPart, ok := strings.Cut(token, ".")
	if !ok || len(token) > 64 {
		return "", false
	}
	enc := base64.RawURLEncoding
	id, err := enc.DecodeString(idPart)
	if err != nil || len(id) != deviceIDBytes {
		return "", false
	}
	mac, err := enc.DecodeString(macPart)
	if err != nil || !hmac.Equal(mac, g.deviceMAC(id)) {
		return "", false
	}
	return idPart, true
}

func (g *Gate) deviceMAC(id []byte) []byte {
	h := hmac.New(sha256.New, g.deviceKey)
	h.Write([]byte("defender device\x00"))
	h.Write(id)
	return h.Sum(nil)[:deviceMACBytes]
}
