//go:build wasip1

// Command adaptive is the built-in replayd policy "adaptive"; its logic lives in
// replayd/policies/recipe and is documented in policies/README.md.
package main

import (
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

func init() { sdk.Register(&recipe.Adaptive{}) }

func main() {}
