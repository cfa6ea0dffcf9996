//go:build !ssobot_server

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// benchBinary is the ssobot binary built once per bench run.
type benchBinary struct {
	once      sync.Once
	path      string
	dir       string // temporary, removed by cleanup
	root      string // module root, "" when not in the repository
	buildTime time.Duration
	built     bool // by this run, with go build
	err       error
}

func (bb *benchBinary) cleanup() {
	if bb.dir != "" {
		os.RemoveAll(bb.dir)
	}
}

// moduleRoot finds the directory of ssobot's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ssobot/ssobot\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the ssobot repository")
		}
		dir = parent
	}
}

// ssobotBinary returns the binary the restart section runs: --binary, else
// a fresh go build of ./cmd/ssobot, else this executable when it is ssobot.
func (b *bench) ssobotBinary(ctx context.Context) (string, error) {
	if b.opts.Binary != "" {
		return b.opts.Binary, nil
	}
	bb := &b.binary
	bb.once.Do(func() {
		root, err := moduleRoot()
		_, lookErr := exec.LookPath("go")
		if err == nil && lookErr == nil {
			bb.root = root
			if bb.dir, bb.err = os.MkdirTemp("", "ssobot-bench-bin-"); bb.err != nil {
				return
			}
			// The server build, as the Docker image ships it.
			bb.path = filepath.Join(bb.dir, "ssobot")
			b.logf("   go build -tags %s ./cmd/ssobot", serverTag)
			bb.buildTime, bb.err = goBuild(ctx, root, nil, "-tags", serverTag, "-o", bb.path, "./cmd/ssobot")
			bb.built = bb.err == nil
			return
		}
		self, xerr := os.Executable()
		if xerr != nil || strings.HasSuffix(self, ".test") {
			bb.err = fmt.Errorf("no ssobot binary to run: run the bench from the repository with go on PATH, or pass --binary (%v)", errors.Join(err, lookErr))
			return
		}
		bb.path = self
	})
	return bb.path, bb.err
}

// serverTag is the build tag of the server build (see server_build.go).
const serverTag = "ssobot_server"

// goBuild runs go build in dir and returns how long it took.
func goBuild(ctx context.Context, dir string, env []string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start), nil
}

// benchBinarySection reports the binary's size, stripped and not, the time
// of a build with a warm and with an empty build cache, and which
// Cloudflare SDK packages the binary links.
func benchBinarySection(ctx context.Context, b *bench, s *benchSection) error {
	bin, err := b.ssobotBinary(ctx)
	if err != nil {
		return err
	}
	root := b.binary.root
	if root == "" {
		root, _ = moduleRoot()
	}
	_, lookErr := exec.LookPath("go")
	canBuild := root != "" && lookErr == nil

	t := s.table("Binary size and build time of ./cmd/ssobot", "build", "size", "build time")
	info, err := os.Stat(bin)
	if err != nil {
		return err
	}
	buildTime, name := "(given with --binary)", "the binary given with --binary"
	if b.opts.Binary == "" {
		buildTime, name = "", "this executable (no go or no repository to build with)"
	}
	if b.binary.built {
		buildTime = fmtDur(b.binary.buildTime) + " (warm cache)"
		name = "go build -tags " + serverTag + " ./cmd/ssobot (the server build: no demo, no bench)"
	}
	t.row(name, fmtMB(info.Size()), buildTime)
	s.value("binary_server_bytes", float64(info.Size()))

	if canBuild && !b.opts.Quick {
		dir, err := os.MkdirTemp("", "ssobot-bench-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		full := filepath.Join(dir, "ssobot-full")
		b.logf("   go build ./cmd/ssobot")
		d, err := goBuild(ctx, root, nil, "-o", full, "./cmd/ssobot")
		if err != nil {
			return err
		}
		fi, err := os.Stat(full)
		if err != nil {
			return err
		}
		t.row("go build ./cmd/ssobot", fmtMB(fi.Size()), fmtDur(d)+" (build cache as found)")
		s.value("binary_bytes", float64(fi.Size()))
		bin = full // the Cloudflare packages are checked in the full build

		small := filepath.Join(dir, "ssobot-small")
		b.logf("   go build -tags %s -trimpath -ldflags=\"-s -w\"", serverTag)
		d, err = goBuild(ctx, root, nil, "-tags", serverTag, "-trimpath", "-ldflags=-s -w", "-o", small, "./cmd/ssobot")
		if err != nil {
			return err
		}
		si, err := os.Stat(small)
		if err != nil {
			return err
		}
		t.row(`go build -tags `+serverTag+` -trimpath -ldflags="-s -w" ./cmd/ssobot (the Docker image's)`, fmtMB(si.Size()), fmtDur(d)+" (build cache as found)")
		s.value("binary_stripped_bytes", float64(si.Size()))

		cache := filepath.Join(dir, "gocache")
		b.logf("   go build with an empty GOCACHE (minutes)")
		d, err = goBuild(ctx, root, []string{"GOCACHE=" + cache}, "-o", filepath.Join(dir, "ssobot-cold"), "./cmd/ssobot")
		if err != nil {
			return err
		}
		t.row("go build ./cmd/ssobot, empty GOCACHE (modules already downloaded)", "", fmtDur(d))
		s.value("cold_build_seconds", roundTo(d.Seconds(), 1))
	} else {
		t.row("go build ./cmd/ssobot", "skipped", benchSkipReason(b, canBuild))
		t.row("go build ./cmd/ssobot, empty GOCACHE", "", benchSkipReason(b, canBuild))
	}

	// Which Cloudflare SDK packages are linked: the symbols of the binary.
	if lookErr != nil {
		s.skip("Cloudflare SDK packages linked", "zero_trust only", "go is not on PATH")
		return nil
	}
	pkgs, err := linkedPackages(ctx, bin, "github.com/cloudflare/cloudflare-go/v7")
	if err != nil {
		return err
	}
	ct := s.table("Cloudflare SDK packages in the binary (go tool nm)", "package", "kind")
	var products []string
	for _, p := range pkgs {
		kind := cloudflarePackageKind(p)
		if strings.HasPrefix(kind, "product") {
			products = append(products, p)
		}
		ct.row(p, kind)
	}
	okProducts := len(products) == 1 && strings.HasSuffix(products[0], "/zero_trust")
	s.check("Cloudflare products linked", "zero_trust only", strings.Join(shortNames(products), ", "), okProducts)
	if canBuild {
		if deps, err := goListDeps(ctx, root); err == nil {
			s.note("Modules linked into ./cmd/ssobot: %s.", strings.Join(deps, ", "))
		}
	}
	return nil
}

func benchSkipReason(b *bench, canBuild bool) string {
	if !canBuild {
		return "skipped: needs go and the repository"
	}
	if b.opts.Quick {
		return "skipped with --quick"
	}
	return "skipped"
}

// linkedPackages lists the packages under prefix with symbols in the binary.
func linkedPackages(ctx context.Context, bin, prefix string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "nm", bin)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool nm: %w", err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// Generic instantiations name several packages in one symbol.
		for rest := sc.Text(); ; {
			i := strings.Index(rest, prefix)
			if i < 0 {
				break
			}
			rest = rest[i:]
			end := strings.IndexFunc(rest, func(r rune) bool {
				return !(r == '/' || r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			})
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			rest = rest[end:]
			// The package path ends at the first dot after its last slash.
			if slash := strings.LastIndexByte(name, '/'); slash >= 0 {
				if dot := strings.IndexByte(name[slash:], '.'); dot > 0 {
					name = name[:slash+dot]
				}
			}
			seen[name] = true
		}
	}
	var pkgs []string
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	return pkgs, sc.Err()
}

// cloudflarePackageKind tells the SDK's plumbing from its products.
func cloudflarePackageKind(p string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(p, "github.com/cloudflare/cloudflare-go/v7"), "/")
	switch {
	case rest == "":
		return "product (the root client links every product)"
	case rest == "option", rest == "shared", strings.HasPrefix(rest, "internal"), strings.HasPrefix(rest, "packages/"):
		return "SDK plumbing"
	}
	return "product"
}

func shortNames(pkgs []string) []string {
	out := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, strings.TrimPrefix(p, "github.com/cloudflare/cloudflare-go/v7/"))
	}
	return out
}

// goListDeps lists the modules ./cmd/ssobot links, with their packages.
func goListDeps(ctx context.Context, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./cmd/ssobot")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	for _, l := range strings.Fields(string(out)) {
		count[l]++
	}
	var mods []string
	for m, n := range count {
		if m == "github.com/ssobot/ssobot" {
			continue
		}
		mods = append(mods, m+" ("+strconv.Itoa(n)+")")
	}
	slices.Sort(mods)
	return mods, nil
}
