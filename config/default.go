package config

import _ "embed"

// DefaultYAML is the embedded default configuration.
//
//go:embed default.yaml
var DefaultYAML []byte

// Default parses the embedded default configuration.
func Default() (*Config, error) { return Parse(DefaultYAML) }
