package ingest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// pki writes a CA and a server and a client certificate signed by it (PEM)
// into dir and returns their paths.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "replayd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// jwtAuth is decentralised auth: an operator signs a system account and an
// account with JetStream, which signs a user whose credentials file is creds.
type jwtAuth struct {
	op                             *jwt.OperatorClaims
	sysPub, sysJWT, accPub, accJWT string
	creds                          string
}

func newOperator(t *testing.T, dir string) jwtAuth {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opPub, err := okp.PublicKey()
	must(err)
	var a jwtAuth
	account := func(js bool) (string, string, nkeys.KeyPair) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		raw, err := ac.Encode(okp)
		must(err)
		return pub, raw, kp
	}
	a.sysPub, a.sysJWT, _ = account(false)
	var akp nkeys.KeyPair
	a.accPub, a.accJWT, akp = account(true)
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "replayd-test"
	oc.SystemAccount = a.sysPub
	opJWT, err := oc.Encode(okp)
	must(err)
	a.op, err = jwt.DecodeOperatorClaims(opJWT)
	must(err)
	ukp, err := nkeys.CreateUser()
	must(err)
	uPub, err := ukp.PublicKey()
	must(err)
	uc := jwt.NewUserClaims(uPub)
	uJWT, err := uc.Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	file, err := jwt.FormatUserConfig(uJWT, seed)
	must(err)
	a.creds = filepath.Join(dir, "user.creds")
	must(os.WriteFile(a.creds, file, 0o600))
	return a
}

// TestConnectTLSAndCreds connects to an external server that requires
// mutual TLS and JWT credentials (operator mode), the setup of a managed
// NATS deployment: the full set connects and reaches JetStream; each
// missing or wrong piece is refused with an error that names the cause.
func TestConnectTLSAndCreds(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	auth := newOperator(t, dir)
	tlsConf, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey,
		CaFile: p.ca, Verify: true, Timeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, raw := range map[string]string{auth.sysPub: auth.sysJWT, auth.accPub: auth.accJWT} {
		if err := resolver.Store(pub, raw); err != nil {
			t.Fatal(err)
		}
	}
	ns := externalServer(t, server.Options{TLS: true, TLSVerify: true, TLSConfig: tlsConf, TLSTimeout: 2,
		TrustedOperators: []*jwt.OperatorClaims{auth.op}, AccountResolver: resolver, SystemAccount: auth.sysPub})
	url := strings.Replace(ns.ClientURL(), "nats://", "tls://", 1)
	otherCreds := newOperator(t, t.TempDir()).creds // a user of an operator the server does not trust
	full := NATSOptions{URL: url, CredsFile: auth.creds, TLSCA: p.ca, TLSCert: p.clientCert, TLSKey: p.clientKey,
		ConnectTimeout: 5 * time.Second}
	cases := []struct {
		name string
		edit func(*NATSOptions)
		want string // "" connects
	}{
		{"mutual tls and creds", func(*NATSOptions) {}, ""},
		{"server not trusted", func(o *NATSOptions) { o.TLSCA = "" }, "unknown authority"},
		// TLS 1.3 rejects the missing certificate after the handshake: the
		// client sees the alert or the closed connection, depending on timing.
		{"no client certificate", func(o *NATSOptions) { o.TLSCert, o.TLSKey = "", "" }, "tls"},
		{"certificate without key", func(o *NATSOptions) { o.TLSKey = "" }, "tls_cert and tls_key must be set together"},
		{"no creds", func(o *NATSOptions) { o.CredsFile = "" }, "Authorization Violation"},
		{"creds of an untrusted operator", func(o *NATSOptions) { o.CredsFile = otherCreds }, "Authorization Violation"},
		{"missing creds file", func(o *NATSOptions) { o.CredsFile = filepath.Join(dir, "absent.creds") }, "absent.creds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			o := full
			tc.edit(&o)
			c, err := Connect(ctx, o)
			if tc.want != "" {
				if err == nil {
					c.Close()
					t.Fatalf("connected, want an error containing %q", tc.want)
				}
				t.Logf("refused: %v", err)
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.JS.AccountInfo(ctx); err != nil {
				t.Fatalf("JetStream over TLS with creds: %v", err)
			}
			if !c.NC.TLSRequired() {
				t.Fatal("connection is not TLS")
			}
		})
	}
}
