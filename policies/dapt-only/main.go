//go:build wasip1

// Command dapt-only is the built-in replayd policy "dapt-only"; its logic lives in
// replayd/policies/recipe and is documented in policies/README.md.
package main

import (
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

func init() { sdk.Register(recipe.NewDAPTOnly()) }

func main() {}
