// Package gate decides, for every login attempt, whether it may reach the
// password check, and learns its outcome: django-defender's brute-force
// protection, rebuilt around one atomic store call per login.
//
// A login handler embeds a *Gate. Before verifying the password it calls
// Begin, which in one round trip to the store refuses a blocked source or
// charges the attempt; after the check it reports the outcome on the
// returned Ticket, which refunds the charge on success and turns it into a
// failure otherwise. Because the attempt is charged before the password is
// checked, at most limit+1 parallel guesses for one username or from one IP
// ever reach the check, however many processes share the store.
//
// Handlers that are plain HTML forms use Middleware instead, which reads the
// username and client address from the request and infers the outcome from
// the response, like django-defender's watch_login.
//
// Two stores behave identically (one conformance suite, package storetest,
// runs against both): RedisStore for any number of instances sharing one
// Redis, and MemoryStore for a single instance.
package gate
