// Command gen is the benchmark's load generator in Go: one shard of bench/loadgen.py's
// load, with the same connections, senders, counting and results, at a small
// fraction of the Python generator's CPU per delivery.
//
// The harness (bench/loadgen.py, ProcessGenerator) starts it as
//
//	gen '{"spec": {...LoadSpec...}, "shard": 0, "procs": 1}'
//
// It opens its connections and prints one JSON line {"kind": "ramped", ...}; then it
// reads commands from stdin: "run <start monotonic ns> <seconds>" answers with
// {"kind": "result", ...}; "close" (or EOF) closes every connection, prints
// {"kind": "closed"} and exits. The JSON fields are those of RampResult and
// RunResult in bench/loadgen.py; latency histograms use bench/hist.py's buckets.
//
// Only the standard library is used. A connection walks frame headers and counts
// the text frames that start with {"type":"chat"; only senders and every
// sample_every-th connection look inside one, for the send time in its text
// ("<monotonic ns> <sender id> <seq>"). With proto "raw" (a hub that joins queued
// messages with newlines into one message, fragmented past its write buffer, and
// sends no welcome) each line of a chat message counts as one delivery and the
// upgrade counts as the welcome.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Spec mirrors bench/loadgen.py's LoadSpec.
type Spec struct {
	Host           string   `json:"host"`
	Port           int      `json:"port"`
	Path           string   `json:"path"`
	N              int      `json:"n"`
	Senders        int      `json:"senders"`
	Window         int      `json:"window"`
	Rate           *float64 `json:"rate"`
	Duration       float64  `json:"duration"`
	SampleEvery    int      `json:"sample_every"`
	Users          int      `json:"users"`
	Concurrency    int      `json:"concurrency"`
	ConnectTimeout float64  `json:"connect_timeout"`
	Proto          string   `json:"proto"`
	DrainTimeout   float64  `json:"drain_timeout"`
}

const (
	settle       = 300 * time.Millisecond // receive counts unchanged this long ends the drain
	closeTimeout = 5 * time.Second        // wait for the server to drop connections we closed
	readBuf      = 16 << 10               // bytes read at once per connection
	maxHead      = 64 << 10               // longest HTTP response head accepted
)

var (
	chatPrefix    = []byte(`{"type":"chat"`)
	welcomePrefix = []byte(`{"type":"welcome"`)
	errorPrefix   = []byte(`{"type":"error"`)
	textKey       = []byte(`"text":"`)
)

// -- clock: CLOCK_MONOTONIC in ns, the clock of Python's time.monotonic_ns --------------

var monoBase int64
var monoStart time.Time

func initClock() {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	monoStart = time.Now()
	monoBase = ts.Nano()
}

func monoNs() int64 { return monoBase + int64(time.Since(monoStart)) }

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// machineBusy is user+nice+system seconds of the whole machine (/proc/stat).
func machineBusy() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	fields := strings.Fields(line)
	total := 0.0
	for i := 1; i <= 3 && i < len(fields); i++ {
		v, _ := strconv.ParseFloat(fields[i], 64)
		total += v
	}
	return total / 100 // USER_HZ
}

// -- histogram: bench/hist.py's log-linear buckets ---------------------------------------

type Hist struct {
	Counts map[int]int `json:"counts"`
	Count  int         `json:"count"`
	MaxUs  int64       `json:"max_us"`
}

func newHist() *Hist { return &Hist{Counts: map[int]int{}} }

func bucket(us int64) int {
	if us < 128 {
		if us > 0 {
			return int(us)
		}
		return 0
	}
	shift := 0
	for v := us; v > 0; v >>= 1 {
		shift++
	}
	shift -= 7
	return (shift << 7) | int(us>>uint(shift))
}

func (h *Hist) add(us int64) {
	h.Counts[bucket(us)]++
	h.Count++
	if us > h.MaxUs {
		h.MaxUs = us
	}
}

// -- tally: what the connections of this shard saw --------------------------------------

type Tally struct {
	mu              sync.Mutex
	errors          map[string]int
	latency         *Hist
	unexpectedClose int
}

func (t *Tally) error(key string) {
	t.mu.Lock()
	t.errors[key]++
	t.mu.Unlock()
}

func (t *Tally) lat(us int64) {
	t.mu.Lock()
	t.latency.add(us)
	t.mu.Unlock()
}

// -- shard --------------------------------------------------------------------------------

type Shard struct {
	reads   atomic.Int64 // read calls of all connections, for reads per delivery
	spec    Spec
	ids     []int
	tally   *Tally
	conns   []*Conn
	senders []*Sender
}

func (sh *Shard) user(g int) string {
	if g < sh.spec.Senders {
		return fmt.Sprintf("s%d", g)
	}
	u := sh.spec.Users
	if u < 1 {
		u = 1
	}
	return fmt.Sprintf("r%d", g%u)
}

func errKey(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "connect_timeout"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return fmt.Sprintf("os_%d", int(en))
	}
	return err.Error()
}

type failure string

func (f failure) Error() string { return string(f) }

// dial opens connection g and waits for its welcome (chathub) or its upgrade (raw).
func (sh *Shard) dial(g int) (*Conn, error) {
	s := sh.spec
	timeout := time.Duration(s.ConnectTimeout * float64(time.Second))
	nc, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), timeout)
	if err != nil {
		return nil, err
	}
	c := &Conn{sh: sh, nc: nc, raw: s.Proto == "raw", done: make(chan struct{}),
		parse: g < s.Senders || (s.SampleEvery > 0 && g%s.SampleEvery == 0)}
	fail := func(e error) (*Conn, error) { nc.Close(); return nil, e }
	nc.SetDeadline(time.Now().Add(timeout))
	key := make([]byte, 16)
	rand.Read(key)
	req := fmt.Sprintf("GET %s?user=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"+
		"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		s.Path, sh.user(g), s.Host, s.Port, base64.StdEncoding.EncodeToString(key))
	if _, err := nc.Write([]byte(req)); err != nil {
		return fail(err)
	}
	buf := make([]byte, readBuf)
	n := 0
	for {
		m, err := nc.Read(buf[n:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fail(err)
			}
			return fail(failure("closed before welcome"))
		}
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
				return fail(failure("http_" + string(buf[9:12])))
			}
			n = copy(buf, buf[i+4:n])
			break
		}
		if n == len(buf) {
			if n >= maxHead {
				return fail(failure("bad_handshake"))
			}
			buf = append(buf, make([]byte, len(buf))...)
		}
	}
	for !c.raw && !c.welcomed {
		used := c.frames(buf[:n])
		n = copy(buf, buf[used:n])
		if c.welcomed {
			break
		}
		if code := c.closeCode.Load(); code != 0 {
			return fail(failure(fmt.Sprintf("close_%d", code)))
		}
		m, err := nc.Read(buf[n:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fail(err)
			}
			return fail(failure("closed before welcome"))
		}
		n += m
	}
	nc.SetDeadline(time.Time{})
	if g < s.Senders {
		c.out = make(chan []byte, 1024)
		go c.writer()
	}
	go c.readLoop(buf, n)
	return c, nil
}

type RampResult struct {
	Kind        string         `json:"kind"`
	Attempted   int            `json:"attempted"`
	Connected   int            `json:"connected"`
	Seconds     float64        `json:"seconds"`
	CPUs        float64        `json:"cpu_s"`
	MachineS    float64        `json:"machine_s"`
	ConnectHist *Hist          `json:"connect_hist"`
	Errors      map[string]int `json:"errors"`
}

func (sh *Shard) ramp() RampResult {
	s := sh.spec
	res := RampResult{Kind: "ramped", Attempted: len(sh.ids), ConnectHist: newHist(), Errors: map[string]int{}}
	conc := s.Concurrency
	if conc < 1 {
		conc = 1
	}
	gate := make(chan struct{}, conc)
	var mu sync.Mutex
	opened := map[int]*Conn{}
	var wg sync.WaitGroup
	cpu0, busy0, t0 := cpuSeconds(), machineBusy(), time.Now()
	for _, g := range sh.ids {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			gate <- struct{}{}
			defer func() { <-gate }()
			started := time.Now()
			c, err := sh.dial(g)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors[errKey(err)]++
				return
			}
			res.ConnectHist.add(int64(time.Since(started) / time.Microsecond))
			opened[g] = c
		}(g)
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	res.CPUs = cpuSeconds() - cpu0
	res.MachineS = machineBusy() - busy0
	for _, g := range sh.ids {
		c := opened[g]
		if c == nil {
			continue
		}
		sh.conns = append(sh.conns, c)
		if g < s.Senders {
			c.sender = &Sender{c: c, sid: []byte(fmt.Sprintf("s%d", g)), window: s.Window, closedLoop: s.Rate == nil}
			sh.senders = append(sh.senders, c.sender)
		}
	}
	res.Connected = len(sh.conns)
	return res
}

func (sh *Shard) chats() int64 {
	var t int64
	for _, c := range sh.conns {
		t += c.chats.Load()
	}
	return t
}

type RunResult struct {
	Kind            string         `json:"kind"`
	Connections     int            `json:"connections"`
	Senders         int            `json:"senders"`
	Sent            int            `json:"sent"`
	Acked           int            `json:"acked"`
	Refused         int            `json:"refused"`
	InFlightLeft    int            `json:"in_flight_left"`
	ChatsWindow     int64          `json:"chats_window"`
	ChatsTotal      int64          `json:"chats_total"`
	Seconds         float64        `json:"seconds"`
	DrainS          float64        `json:"drain_s"`
	CPUs            float64        `json:"cpu_s"`
	MachineS        float64        `json:"machine_s"`
	Latency         *Hist          `json:"latency"`
	Errors          map[string]int `json:"errors"`
	UnexpectedClose int            `json:"unexpected_close"`
	Reads           int64          `json:"reads"`
}

func sleepUntil(ns int64) {
	if d := ns - monoNs(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

func (sh *Shard) run(startNs int64, duration float64) RunResult {
	sleepUntil(startNs)
	t := sh.tally
	t.mu.Lock()
	t.latency = newHist()
	t.errors = map[string]int{}
	t.mu.Unlock()
	res := RunResult{Kind: "result", Connections: len(sh.conns), Senders: len(sh.senders)}
	cpu0, busy0 := cpuSeconds(), machineBusy()
	chats0, reads0 := sh.chats(), sh.reads.Load()
	t0 := monoNs()
	stop := t0 + int64(duration*1e9)
	for _, s := range sh.senders {
		s.start(stop)
	}
	if sh.spec.Rate != nil && len(sh.senders) > 0 && duration > 0 {
		sh.openLoop(t0, stop)
	} else {
		sleepUntil(stop)
	}
	t1 := monoNs()
	for _, s := range sh.senders {
		s.mu.Lock()
		s.stopNs = 0
		s.mu.Unlock()
	}
	res.ChatsWindow = sh.chats() - chats0
	res.Reads = sh.reads.Load() - reads0
	res.Seconds = float64(t1-t0) / 1e9
	res.CPUs = cpuSeconds() - cpu0
	res.MachineS = machineBusy() - busy0
	sh.drain()
	res.DrainS = float64(monoNs()-t1) / 1e9
	res.ChatsTotal = sh.chats() - chats0
	for _, s := range sh.senders {
		s.mu.Lock()
		res.Sent += s.sent
		res.Acked += s.acked
		res.Refused += s.refuse
		res.InFlightLeft += s.inFlight
		s.sent, s.acked, s.refuse = 0, 0, 0
		s.mu.Unlock()
	}
	t.mu.Lock()
	res.Latency = t.latency
	res.Errors = t.errors
	res.UnexpectedClose = t.unexpectedClose
	t.latency = newHist()
	t.errors = map[string]int{}
	t.mu.Unlock()
	return res
}

// openLoop sends this shard's share of the rate round-robin over its senders, each
// message stamped with its intended send time (a late generator shows as latency).
func (sh *Shard) openLoop(t0, stop int64) {
	s := sh.spec
	total := s.Senders
	if s.N < total {
		total = s.N
	}
	if total < 1 {
		total = 1
	}
	share := *s.Rate * float64(len(sh.senders)) / float64(total)
	step := int64(1e9 / share)
	for k := int64(0); ; k++ {
		due := t0 + k*step
		if due >= stop {
			return
		}
		sleepUntil(due)
		sh.senders[k%int64(len(sh.senders))].send(due)
	}
}

func (sh *Shard) drain() {
	deadline := time.Now().Add(time.Duration(sh.spec.DrainTimeout * float64(time.Second)))
	for time.Now().Before(deadline) {
		busy := false
		for _, s := range sh.senders {
			s.mu.Lock()
			if s.inFlight > 0 && !s.c.dead.Load() {
				busy = true
			}
			s.mu.Unlock()
		}
		if !busy {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	last, stable := sh.chats(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if now := sh.chats(); now != last {
			last, stable = now, time.Now()
		} else if time.Since(stable) >= settle {
			break
		}
	}
}

func (sh *Shard) close() {
	for _, c := range sh.conns {
		c.closing.Store(true)
		c.write(clientFrame([]byte{0x03, 0xE8}, 8))
	}
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	for _, c := range sh.conns {
		select {
		case <-c.done:
		case <-timer.C:
			for _, c := range sh.conns {
				c.nc.Close()
			}
			return
		}
	}
}

func main() {
	initClock()
	debug.SetGCPercent(400)
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, `usage: gen '{"spec": {...}, "shard": 0, "procs": 1}'`)
		os.Exit(2)
	}
	var arg struct {
		Spec  Spec `json:"spec"`
		Shard int  `json:"shard"`
		Procs int  `json:"procs"`
	}
	if err := json.Unmarshal([]byte(os.Args[1]), &arg); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(2)
	}
	if arg.Procs < 1 {
		arg.Procs = 1
	}
	sh := &Shard{spec: arg.Spec, tally: &Tally{errors: map[string]int{}, latency: newHist()}}
	for g := arg.Shard; g < arg.Spec.N; g += arg.Procs {
		sh.ids = append(sh.ids, g)
	}
	if path := os.Getenv("CHATHUB_BENCH_GEN_PROFILE"); path != "" { // a CPU profile for go tool pprof
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	out := json.NewEncoder(os.Stdout)
	out.Encode(sh.ramp())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 3 && f[0] == "run" {
			start, _ := strconv.ParseInt(f[1], 10, 64)
			dur, _ := strconv.ParseFloat(f[2], 64)
			out.Encode(sh.run(start, dur))
			continue
		}
		break
	}
	sh.close()
	out.Encode(map[string]string{"kind": "closed"})
}
