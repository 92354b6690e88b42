package forwarders

import (
	"errors"
	"net/url"
)

// redacted replaces a secret in a URL.
const redacted = "REDACTED"

// RedactURL returns raw with its user info and every query value replaced,
// for logs, /readyz, metrics and dead-letter reasons. A URL's user info is a
// password, and its query often carries a token (?api_key=...); the names
// of the parameters stay, for the operator to recognise. A string that does
// not parse is replaced whole: it may be a URL that failed to parse.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	return redactURL(u)
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		c.RawQuery = q.Encode()
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// RedactError redacts the URL in err: net/http's errors (*url.Error) quote
// the whole request URL, query and all. It changes the error in place, so
// every later wrapper and log line gets the redacted form.
func RedactError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = RedactURL(ue.URL)
	}
	return err
}
