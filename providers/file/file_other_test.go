//go:build !unix

package file_test

import "errors"

func mkfifo(string) error { return errors.New("no FIFOs here") }
