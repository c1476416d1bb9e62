package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the numbers were taken.
type Machine struct {
	NumCPU    int               `json:"nproc"`
	CPUModel  string            `json:"cpu_model"`
	Memory    string            `json:"memory"`
	Kernel    string            `json:"kernel"`
	GoVersion string            `json:"go_version"`
	Versions  map[string]string `json:"versions"`
	// Tree is the commit the gateway was built from and the uncommitted
	// changes on top of it.
	Tree string `json:"tree"`
}

func machineInfo(ctx context.Context, switchyard string) Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Versions: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kib := statusKiB(b, "MemTotal:"); kib > 0 {
			m.Memory = strconv.FormatFloat(float64(kib)/(1<<20), 'f', 1, 64) + " GiB"
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	run := func(name string, args ...string) string {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := exec.LookPath(name); err != nil && !strings.Contains(name, "/") {
			return ""
		}
		out, err := commandOutput(c, "", name, args...)
		if err != nil {
			return ""
		}
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		return strings.TrimSpace(line)
	}
	m.Versions[targetSwitchyard] = run(switchyard, "version")
	m.Versions[targetNginx] = run("nginx", "-v")
	m.Versions[targetHAProxy] = run("haproxy", "-v")
	m.Versions[targetCaddy] = run("caddy", "version")
	m.Versions["go"] = run("go", "version")
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/tsenart/vegeta/v12", "github.com/valyala/fasthttp":
				m.Versions[d.Path] = d.Version
			}
		}
	}
	// Read-only git: no index refresh (--no-optional-locks).
	rev := run("git", "rev-parse", "--short", "HEAD")
	diff := run("git", "--no-optional-locks", "diff", "--shortstat", "HEAD", "--", ".", ":(exclude)bench", ":(exclude)docs")
	m.Tree = rev
	if diff != "" {
		m.Tree += " + uncommitted: " + diff
	}
	return m
}
