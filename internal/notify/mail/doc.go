// Package mail tells users by e-mail that their username was blocked:
// a Lookup finds the user's address, a Sender writes and sends the mail.
//
// # Why a lookup
//
// Defender sees usernames, never accounts: the gate counts failures for
// whatever was typed into the login form. Only the site knows whether a
// username is an account and where its owner reads mail, so Lookup asks
// the site over HTTP (a small endpoint answering {"email": "..."} or 404)
// and caches the answers, found and not found alike, so that an attack
// on many usernames does not become an attack on that endpoint.
//
// # Why no username in the headers
//
// A blocked username is whatever an attacker typed: any Unicode, CR and LF
// included. Headers are where such text does harm (a name carrying
// "\r\nBcc: ..." adds a recipient if anything writes it unfolded), so the
// Subject is fixed, the To header holds the bare address from the lookup,
// and the username appears only in the bodies: in the text part with
// control and format characters removed (no line breaks, no right-to-left
// override that reverses what the user reads) and capped at 200 runes;
// in the HTML part the same, then escaped by html/template.
//
// # Message-ID and resends
//
// Block events arrive at least once: a notifier that crashed after sending
// but before acknowledging sends the same event again. MessageID derives
// the Message-ID from the event's id and the From domain, so the copy
// carries the Message-ID of the first mail; receiving systems that drop
// duplicates by Message-ID (many do) show it once.
//
// # What the mail says
//
// The account, how many failed sign-ins, the last one's address and time,
// until when the account stays locked and what to do, whether it was the
// user (wait, or use the unlock link) or not (change the password, turn on
// two-factor authentication). It never says whether a password that was
// tried was right: the mail may be read by the attacker too.
//
// # Operator templates
//
// Options.TextTemplate (text/template) and Options.HTMLTemplate
// (html/template) replace the embedded defaults in templates/. Both are
// parsed and tried once in NewSender, so a broken template stops the
// notifier at start, naming the file. The fields they may use:
//
//	.Site        the site's name (Options.Site, default "your account")
//	.Username    the blocked username, cleaned and capped as above
//	.IP          the address of the last failure, "" when unknown
//	.Failures    the number of failed sign-ins
//	.Time        when the block happened, "2006-01-02 15:04 UTC"
//	.Until       when it ends, same form; "" for a block until it is unlocked
//	.UnlockURL   the unlock link; "" when unlocking from the mail is off
//	.UnlockValid how long the link is valid, e.g. "1 hour"
package mail
