package daemon

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Flags registers settings on a flag set, each also read from a COFFER_*
// environment variable: the variable, when set, replaces the default, and
// the flag, when given, replaces both. The variable's name ends the
// flag's usage, so -help lists both. A malformed variable is reported by
// Err, every one at once.
type Flags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

// NewFlags registers on fs, reading the environment through getenv.
func NewFlags(fs *flag.FlagSet, getenv func(string) string) *Flags {
	return &Flags{fs: fs, getenv: getenv}
}

// FlagSet is the flag set the settings are registered on.
func (f *Flags) FlagSet() *flag.FlagSet { return f.fs }

// Getenv reads the environment the flags' defaults come from.
func (f *Flags) Getenv(name string) string { return f.getenv(name) }

// Err reports every malformed environment variable read so far.
func (f *Flags) Err() error { return errors.Join(f.errs...) }

func usage(text, env string) string {
	if env == "" {
		return text
	}
	return text + " (" + env + ")"
}

// String registers a string setting.
func (f *Flags) String(p *string, name, env, def, text string) {
	if v := f.env(env); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, usage(text, env))
}

// Secret registers a string setting that holds a secret, such as a
// token: like String, but a value read from the environment is not the
// flag's default, so that -help and the usage printed on a mistyped flag
// never show it.
func (f *Flags) Secret(p *string, name, env, text string) {
	f.fs.StringVar(p, name, "", usage(text, env))
	if v := f.env(env); v != "" {
		*p = v
	}
}

// Int registers an integer setting.
func (f *Flags) Int(p *int, name, env string, def int, text string) {
	if v := f.env(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s %q: want a whole number", env, v))
		} else {
			def = n
		}
	}
	f.fs.IntVar(p, name, def, usage(text, env))
}

// Duration registers a duration setting ("90s", "5m").
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, text string) {
	if v := f.env(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s %q: want a duration such as 90s or 5m", env, v))
		} else {
			def = d
		}
	}
	f.fs.DurationVar(p, name, def, usage(text, env))
}

// Bool registers a boolean setting ("true", "false", "1", "0").
func (f *Flags) Bool(p *bool, name, env string, def bool, text string) {
	if v := f.env(env); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s %q: want true or false", env, v))
		} else {
			def = b
		}
	}
	f.fs.BoolVar(p, name, def, usage(text, env))
}

func (f *Flags) env(name string) string {
	if name == "" {
		return ""
	}
	return f.getenv(name)
}
