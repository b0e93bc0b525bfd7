// Package legacyredis keeps the Redis scripts of the gate's first store
// protocol, verbatim as they were before the protocol of one script per
// login (v1/, from commit 808ea3d): two scripts per login, every attempt
// charged as a pending token, counted when its outcome comes.
//
// Gates of that version share a Redis with current ones during a rolling
// upgrade: pkg/gate's upgrade test runs these scripts beside the current
// ones, and the bench measures them as the "before" of the change. Both
// protocols take the same KEYS and ARGV (see v1/common.lua), the current
// Finish adding its settled marker.
package legacyredis

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed v1/common.lua
	common string
	//go:embed v1/begin.lua
	begin string
	//go:embed v1/finish.lua
	finish string
	//go:embed v1/record.lua
	record string
	//go:embed v1/check.lua
	check string
)

// The first protocol's scripts, as its gates ran them.
var (
	Begin  = redis.NewScript("#!lua\n" + common + begin)
	Finish = redis.NewScript("#!lua\n" + common + finish)
	Record = redis.NewScript("#!lua\n" + common + record)
	Check  = redis.NewScript("#!lua flags=no-writes\n" + common + check)
)
