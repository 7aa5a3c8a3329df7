// Package tenantry is the Go client of the Tenantry API: a connection helper
// (TLS, an optional client certificate and an optional bearer token) and
// helpers to read the details of its errors. The API itself is the generated
// package github.com/tenantry/tenantry/clients/go/tenantry/tenant/v1.
package tenantry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	tenantv1 "github.com/tenantry/tenantry/clients/go/tenantry/tenant/v1"
)

// Config says where the API is and how to call it.
type Config struct {
	// Address is host:port of the API, e.g. "127.0.0.1:50051".
	Address string
	// CAFile is the PEM file of the CA that signed the API's server
	// certificate. Empty trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key (mTLS):
	// both or neither.
	CertFile, KeyFile string
	// BearerToken, when set, is sent with every call as
	// `authorization: Bearer <token>`; the API then takes the caller from the
	// token rather than from the certificate.
	BearerToken string
}

// Client is a TenantService client on its own connection.
type Client struct {
	tenantv1.TenantServiceClient
	conn *grpc.ClientConn
}

// NewClient makes a client for cfg. Like grpc.NewClient it does not connect
// yet: a wrong address or certificate shows on the first call. opts are
// appended to the dial options (interceptors, keepalive, ...).
func NewClient(cfg Config, opts ...grpc.DialOption) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("tenantry: no address")
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig))}
	if cfg.BearerToken != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(Token(cfg.BearerToken)))
	}
	conn, err := grpc.NewClient(cfg.Address, append(dial, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("tenantry: %w", err)
	}
	return &Client{TenantServiceClient: tenantv1.NewTenantServiceClient(conn), conn: conn}, nil
}

// Conn is the client's connection, for other services on it (health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (cfg Config) tlsConfig() (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tenantry: CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tenantry: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		config.RootCAs = roots
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("tenantry: a client certificate needs both CertFile and KeyFile")
	}
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tenantry: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// Token is a bearer token as per-call credentials: pass it to NewClient
// through Config.BearerToken, or to one call with
// grpc.PerRPCCredentials(tenantry.Token(t)).
type Token string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a token
// is never sent in clear text.
func (Token) RequireTransportSecurity() bool { return true }
