package gate

import (
	"errors"
	"fmt"
)

// ErrNotChecked is returned by Block for a kind of block that this
// configuration never checks: such a block would be listed but would
// refuse nobody.
var ErrNotChecked = errors.New("gate: this configuration does not check blocks of that kind")

// Checks reports whether logins are refused by blocks of kind k under this
// configuration: the kinds its counters have (see identify). In combo mode
// (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME) that is the pair, or the one side
// left when the other is disabled; otherwise the IP and the username,
// unless disabled. A block of another kind (left from an earlier
// configuration, or written by hand) is listed and can be lifted, but
// refuses nobody.
func (g *Gate) Checks(k Kind) bool {
	c := &g.cfg
	switch k {
	case KindSpray, KindSprayNet:
		return c.SprayLimit > 0 // in every mode
	case KindSprayShared:
		return false // a report: it refuses nobody
	}
	if c.countsPairs() {
		return k == KindPair
	}
	switch k {
	case KindIP:
		return !c.DisableIPLockout
	case KindUsername:
		return !c.DisableUsernameLockout
	case KindUsernameFamiliar:
		return !c.DisableUsernameLockout && c.SmartLockout
	}
	return false
}

// notChecked explains why blocks of kind k refuse nobody here.
func (g *Gate) notChecked(k Kind) error {
	c := &g.cfg
	var why string
	switch {
	case k == KindPair:
		why = "pairs are only counted in combo mode (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME with both sides on)"
	case k == KindSpray || k == KindSprayNet:
		why = "spraying detection is off (DEFENDER_SPRAY_LIMIT=0)"
	case k == KindSprayShared:
		why = "spraying from a shared address is reported, never enforced: everyone behind the address would be refused"
	case k == KindUsernameFamiliar && !c.SmartLockout:
		why = "smart lockout is off (DEFENDER_SMART_LOCKOUT)"
	case k == KindIP && c.DisableIPLockout:
		why = "DEFENDER_DISABLE_IP_LOCKOUT is set; to refuse an address always, list it in DEFENDER_IP_BLACKLIST"
	case k == KindUsername && c.DisableUsernameLockout:
		why = "DEFENDER_DISABLE_USERNAME_LOCKOUT is set"
	case k == KindIP:
		why = "combo mode (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME) counts (IP, username) pairs: block a pair, or list the address in DEFENDER_IP_BLACKLIST to refuse it always"
	default:
		why = "combo mode (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME) counts (IP, username) pairs: block a pair"
	}
	return fmt.Errorf("%w: a %s block would refuse nobody: %s", ErrNotChecked, k, why)
}
