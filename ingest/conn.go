package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions says how to reach NATS: an external server or cluster when URL
// is set, otherwise an embedded server started in this process.
type NATSOptions struct {
	// URL is a comma-separated list of server URLs (nats://host:4222,...).
	// Empty starts the embedded server.
	URL string `mapstructure:"url" json:"url"`
	// CredsFile is a NATS credentials file (JWT + nkey seed).
	CredsFile string `mapstructure:"creds_file" json:"creds_file"`
	// User and Password authenticate with a user/password pair.
	User     string `mapstructure:"user" json:"user"`
	Password string `mapstructure:"password" json:"-"`
	// Token authenticates with a token.
	Token string `mapstructure:"token" json:"-"`
	// TLSCA is a PEM file of CAs to verify the server with; TLSCert and
	// TLSKey are a client certificate and key for mutual TLS.
	TLSCA   string `mapstructure:"tls_ca" json:"tls_ca"`
	TLSCert string `mapstructure:"tls_cert" json:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key" json:"tls_key"`
	// Name is the connection name shown by the server (default "replayd").
	Name string `mapstructure:"name" json:"name"`
	// ConnectTimeout bounds the first connection (default 10s).
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" json:"connect_timeout"`
	// ReconnectWait is the pause between reconnect attempts (default 1s).
	// The connection retries forever: the daemon is long-running, and the
	// JetStream readers resume where they stopped once it is back.
	ReconnectWait time.Duration `mapstructure:"reconnect_wait" json:"reconnect_wait"`
	// Embedded configures the embedded server used when URL is empty.
	Embedded EmbeddedOptions `mapstructure:"embedded" json:"embedded"`
	// Logger receives connection events and the embedded server's log
	// (nil: discarded).
	Logger *slog.Logger `mapstructure:"-" json:"-"`
}

// EmbeddedOptions configures the in-process nats-server.
type EmbeddedOptions struct {
	// DataDir holds the JetStream file store (required: the log must
	// survive restarts). A "jetstream" folder is created inside.
	DataDir string `mapstructure:"data_dir" json:"data_dir"`
	// Host is the listen address (default 127.0.0.1: the embedded server
	// is for one machine; run a real cluster to serve a network).
	Host string `mapstructure:"host" json:"host"`
	// Port is the client port; 0 picks a free one (see Conn.ClientURL).
	Port int `mapstructure:"port" json:"port"`
	// NoListen serves only the in-process connection, with no TCP port.
	// `replayd ingest` then cannot reach it.
	NoListen bool `mapstructure:"no_listen" json:"no_listen"`
	// MaxMemory and MaxStore cap JetStream memory and file storage in
	// bytes. They are always set explicitly because the server's defaults
	// are 75% of RAM and of the disk. Defaults: 256 MiB and 10 GiB.
	MaxMemory int64 `mapstructure:"max_memory" json:"max_memory"`
	MaxStore  int64 `mapstructure:"max_store" json:"max_store"`
	// MaxPayload is the largest message the server accepts (default 1 MiB,
	// the NATS default).
	MaxPayload int32 `mapstructure:"max_payload" json:"max_payload"`
	// ServerName names the server (default "replayd-embedded"); JetStream
	// keys its storage by it, so keep it stable across restarts.
	ServerName string `mapstructure:"server_name" json:"server_name"`
	// ReadyTimeout bounds the server start (default 10s).
	ReadyTimeout time.Duration `mapstructure:"ready_timeout" json:"ready_timeout"`
}

// Defaults for the embedded server.
const (
	DefaultEmbeddedMaxMemory  = 256 << 20
	DefaultEmbeddedMaxStore   = 10 << 30
	DefaultEmbeddedMaxPayload = 1 << 20
)

// Conn is a NATS connection with its JetStream context and, when NATS is
// embedded, the server.
type Conn struct {
	// NC is the NATS connection.
	NC *nats.Conn
	// JS is the JetStream API on NC.
	JS jetstream.JetStream
	// Server is the embedded server, nil for an external one.
	Server *server.Server

	closed chan struct{} // closed by the ClosedHandler
	log    *slog.Logger
}

// Connect connects to NATS as opts says, starting the embedded server when
// opts.URL is empty. The caller must Close the Conn.
func Connect(ctx context.Context, opts NATSOptions) (*Conn, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Name == "" {
		opts.Name = "replayd"
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = time.Second
	}
	c := &Conn{closed: make(chan struct{}), log: log}
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.Timeout(opts.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil || nc.IsClosed() || nc.IsDraining() {
				log.Debug("nats connection closed") // our own Close or Drain
				return
			}
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	}
	url := opts.URL
	if url == "" {
		ns, err := startEmbedded(opts.Embedded, log)
		if err != nil {
			return nil, err
		}
		c.Server = ns
		nopts = append(nopts, nats.InProcessServer(ns))
		url = ns.ClientURL()
	} else {
		if opts.CredsFile != "" {
			nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
		}
		if opts.User != "" {
			nopts = append(nopts, nats.UserInfo(opts.User, opts.Password))
		}
		if opts.Token != "" {
			nopts = append(nopts, nats.Token(opts.Token))
		}
		if opts.TLSCA != "" {
			nopts = append(nopts, nats.RootCAs(opts.TLSCA))
		}
		if opts.TLSCert != "" || opts.TLSKey != "" {
			if opts.TLSCert == "" || opts.TLSKey == "" {
				return nil, errors.New("nats: tls_cert and tls_key must be set together")
			}
			nopts = append(nopts, nats.ClientCert(opts.TLSCert, opts.TLSKey))
		}
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	// nats.Connect does not take a context; run it aside so a cancelled
	// ctx returns promptly (the connect itself is bounded by Timeout).
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, nopts...)
		ch <- result{nc, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		r = <-ch // bounded by ConnectTimeout; close whatever it made
		if r.nc != nil {
			r.nc.Close()
		}
		c.shutdownServer()
		return nil, fmt.Errorf("nats connect: %w", ctx.Err())
	}
	if r.err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("nats connect %s: %w", redact(url), r.err)
	}
	c.NC = r.nc
	js, err := jetstream.New(r.nc)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.JS = js
	return c, nil
}

// ClientURL is the URL other processes (e.g. `replayd ingest --url`) use to
// reach this connection's server: the embedded server's listen address, or
// the URL connected to.
func (c *Conn) ClientURL() string {
	if c.Server != nil {
		if c.Server.Addr() == nil {
			return ""
		}
		return c.Server.ClientURL()
	}
	return c.NC.ConnectedUrlRedacted()
}

// Close drains the connection (pending publishes and acks complete,
// subscriptions end), waits for it to close, then shuts the embedded server
// down. It is safe to call more than once.
func (c *Conn) Close() error {
	var err error
	if c.NC != nil && !c.NC.IsClosed() {
		if derr := c.NC.Drain(); derr != nil {
			c.NC.Close()
		}
		// Drain is asynchronous; bound the wait so a dead server cannot
		// hang shutdown (nats.DrainTimeout defaults to 30s).
		select {
		case <-c.closed:
		case <-time.After(35 * time.Second):
			c.NC.Close()
			err = errors.New("nats: drain did not finish in 35s")
		}
	}
	c.shutdownServer()
	return err
}

func (c *Conn) shutdownServer() {
	if c.Server != nil {
		c.Server.Shutdown()
		c.Server.WaitForShutdown()
	}
}

func startEmbedded(o EmbeddedOptions, log *slog.Logger) (*server.Server, error) {
	if o.DataDir == "" {
		return nil, errors.New("embedded nats: data_dir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = DefaultEmbeddedMaxMemory
	}
	if o.MaxStore <= 0 {
		o.MaxStore = DefaultEmbeddedMaxStore
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultEmbeddedMaxPayload
	}
	if o.ServerName == "" {
		o.ServerName = "replayd-embedded"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	store := filepath.Join(o.DataDir, "jetstream")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	sopts := &server.Options{
		ServerName:         o.ServerName,
		Host:               o.Host,
		Port:               port,
		DontListen:         o.NoListen,
		JetStream:          true,
		StoreDir:           store,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  o.MaxStore,
		MaxPayload:         o.MaxPayload,
		NoSigs:             true, // the daemon owns signal handling
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s", o.ReadyTimeout)
	}
	return ns, nil
}

// serverLogger adapts slog to the nats-server Logger interface.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLogger) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Tracef(f string, v ...any)  {}

// redact hides credentials embedded in URLs (nats://user:pass@host).
func redact(urls string) string {
	out := []byte(urls)
	// Replace "//user:pass@" by "//***@" in each URL.
	res := make([]byte, 0, len(out))
	for i := 0; i < len(out); i++ {
		if i+1 < len(out) && out[i] == '/' && out[i+1] == '/' {
			j := i + 2
			for j < len(out) && out[j] != '@' && out[j] != ',' && out[j] != '/' {
				j++
			}
			if j < len(out) && out[j] == '@' {
				res = append(res, "//***@"...)
				i = j
				continue
			}
		}
		res = append(res, out[i])
	}
	return string(res)
}
