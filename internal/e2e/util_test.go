package e2e

import "io"

func copyN(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, io.LimitReader(r, 64<<20)) }
