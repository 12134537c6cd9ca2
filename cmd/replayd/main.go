// Command replayd keeps a language model current on a domain with the
// Joint-and-Replay post-training recipe. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"replayd/daemon"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks for a clean stop: finish the step, write a
		// checkpoint, drain NATS. A second one exits at once.
		s := <-sigs
		fmt.Fprintf(os.Stderr, "replayd: %v: stopping after the current step (again to exit now)\n", s)
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "replayd: second signal: exiting without a checkpoint")
		os.Exit(130)
	}()
	err := daemon.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "replayd:", err)
		os.Exit(1)
	}
}
