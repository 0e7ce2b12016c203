// Command coffer is coffer's command-line client, and runs its services.
// Run coffer --help for its commands, and coffer help COMMAND for each.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "coffer:", err)
	}
	os.Exit(exitCode(err))
}

// run runs a command line; it is main without the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return execute(ctx, args, os.Getenv, os.Stdin, stdout, stderr)
}
