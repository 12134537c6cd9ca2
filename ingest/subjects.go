package ingest

import (
	"fmt"
	"sort"
	"strings"
)

// Subject layout: <prefix>.<kind>.<domain>, e.g. replayd.ingest.sft.fin.
const (
	// DefaultSubjectPrefix is the prefix of the ingest subjects.
	DefaultSubjectPrefix = "replayd.ingest"
	// DefaultDLQPrefix is the prefix of the dead-letter subjects
	// (replayd.dlq.<reason>).
	DefaultDLQPrefix = "replayd.dlq"
)

// Domains maps each configured domain name to whether it is general data
// (true: replay material, the paper's *-Gen buckets) or the target domain
// (false: the *-In buckets).
type Domains map[string]bool

// DefaultDomains is "fin" as the target domain and "gen" as general data.
func DefaultDomains() Domains { return Domains{"fin": false, "gen": true} }

// Names returns the domain names, sorted.
func (d Domains) Names() []string {
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Subjects parses and builds ingest subjects for a prefix and a domain map.
type Subjects struct {
	// Prefix is the subject prefix (DefaultSubjectPrefix when empty).
	Prefix string
	// Domains are the accepted domains (DefaultDomains when empty).
	Domains Domains
}

func (s Subjects) withDefaults() Subjects {
	if s.Prefix == "" {
		s.Prefix = DefaultSubjectPrefix
	}
	if len(s.Domains) == 0 {
		s.Domains = DefaultDomains()
	}
	return s
}

// Subject returns the subject samples of kind k in domain are published on.
func (s Subjects) Subject(k Kind, domain string) string {
	s = s.withDefaults()
	return s.Prefix + "." + k.String() + "." + domain
}

// Wildcard returns the subject filter the ingest stream captures.
func (s Subjects) Wildcard() string { return s.withDefaults().Prefix + ".>" }

// Parse maps a subject to its kind, domain and bucket. Errors are
// *RejectError with ReasonUnknownKind or ReasonUnknownSubject.
func (s Subjects) Parse(subject string) (Kind, string, Bucket, error) {
	s = s.withDefaults()
	rest, ok := strings.CutPrefix(subject, s.Prefix+".")
	if !ok {
		return 0, "", 0, reject(ReasonUnknownSubject, "subject %q is not under %s", subject, s.Prefix)
	}
	kindTok, domain, ok := strings.Cut(rest, ".")
	if !ok || domain == "" || strings.Contains(domain, ".") {
		return 0, "", 0, reject(ReasonUnknownSubject, "subject %q is not %s.<kind>.<domain>", subject, s.Prefix)
	}
	k, err := ParseKind(kindTok)
	if err != nil {
		return 0, "", 0, reject(ReasonUnknownKind, "subject %q: %v", subject, err)
	}
	general, ok := s.Domains[domain]
	if !ok {
		return 0, "", 0, reject(ReasonUnknownSubject, "subject %q: domain %q is not configured (have %v)", subject, domain, s.Domains.Names())
	}
	return k, domain, BucketOf(k, general), nil
}

// BucketSubjects returns the subjects whose samples fall in bucket b.
func (s Subjects) BucketSubjects(b Bucket) []string {
	s = s.withDefaults()
	var out []string
	for _, d := range s.Domains.Names() {
		for _, k := range []Kind{KindDAPT, KindSFT} {
			if BucketOf(k, s.Domains[d]) == b {
				out = append(out, s.Subject(k, d))
			}
		}
	}
	return out
}

// validateToken checks that a subject token (a domain name) is usable.
func validateToken(what, t string) error {
	if t == "" || strings.ContainsAny(t, ".*> \t\r\n") {
		return fmt.Errorf("%s %q: must be a non-empty subject token without '.', '*', '>' or whitespace", what, t)
	}
	return nil
}
