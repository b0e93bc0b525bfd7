package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RunWithCommands is the body of a TestMain whose tests run defender's
// binaries as processes: unless -short, it builds the commands pkgs
// (import paths) into a temporary directory and hands it to built, runs
// the tests, removes the directory and returns the exit code for os.Exit.
func RunWithCommands(m *testing.M, built func(dir string), pkgs ...string) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "defender-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building %v: %v\n", pkgs, err)
		return 1
	}
	built(dir)
	return m.Run()
}
