package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// One connection of the generator: frames in and out, the sending side of a sender.

// -- frames -----------------------------------------------------------------------------

// clientFrame is a complete client frame (FIN set) masked with a zero key.
func clientFrame(payload []byte, opcode byte) []byte {
	n := len(payload)
	var out []byte
	switch {
	case n < 126:
		out = append(make([]byte, 0, n+6), 0x80|opcode, 0x80|byte(n))
	case n < 65536:
		out = append(make([]byte, 0, n+8), 0x80|opcode, 0xFE, byte(n>>8), byte(n))
	default:
		out = append(make([]byte, 0, n+14), 0x80|opcode, 0xFF)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, 0, 0, 0, 0)
	return append(out, payload...)
}

func chatFrame(sentNs int64, sid []byte, seq int) []byte {
	p := make([]byte, 0, 64)
	p = append(p, `{"type":"chat","text":"`...)
	p = strconv.AppendInt(p, sentNs, 10)
	p = append(p, ' ')
	p = append(p, sid...)
	p = append(p, ' ')
	p = strconv.AppendInt(p, int64(seq), 10)
	p = append(p, `"}`...)
	return clientFrame(p, 1)
}

// -- sender -----------------------------------------------------------------------------

type Sender struct {
	mu                                 sync.Mutex
	c                                  *Conn
	sid                                []byte
	window                             int
	closedLoop                         bool
	stopNs                             int64
	seq, inFlight, sent, acked, refuse int
}

func (s *Sender) sendLocked(ns int64) bool {
	s.seq++
	if !s.c.write(chatFrame(ns, s.sid, s.seq)) {
		return false
	}
	s.inFlight++
	s.sent++
	return true
}

func (s *Sender) send(ns int64) {
	s.mu.Lock()
	s.sendLocked(ns)
	s.mu.Unlock()
}

func (s *Sender) start(stopNs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopNs = stopNs
	if s.closedLoop {
		now := monoNs()
		for i := 0; i < s.window; i++ {
			s.sendLocked(now)
		}
	}
}

func (s *Sender) doneOne(refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if refused {
		s.refuse++
	} else {
		s.acked++
	}
	if s.closedLoop {
		now := monoNs()
		if now < s.stopNs {
			for s.inFlight < s.window {
				if !s.sendLocked(now) {
					break
				}
			}
		}
	}
}

// -- connection -------------------------------------------------------------------------

type Conn struct {
	sh        *Shard
	nc        net.Conn
	parse     bool
	raw       bool
	sender    *Sender
	wmu       sync.Mutex
	chats     atomic.Int64
	closing   atomic.Bool
	dead      atomic.Bool
	closeCode atomic.Int32
	welcomed  bool
	done      chan struct{}
	// a fragmented chat message in progress (the Go hub fragments messages longer
	// than its 1,024-byte write buffer), and its bytes when this connection parses
	inChat bool
	msg    []byte
	// out feeds a sender's writer goroutine, so that a sender never stops reading
	// while its own write waits for the server (nil for receivers: they write
	// only pongs and closes)
	out chan []byte
}

func (c *Conn) write(b []byte) bool {
	if c.dead.Load() {
		return false
	}
	if c.out != nil {
		select {
		case c.out <- b:
			return true
		case <-c.done:
			return false
		}
	}
	c.wmu.Lock()
	_, err := c.nc.Write(b)
	c.wmu.Unlock()
	return err == nil
}

// frames walks the complete frames in buf and returns how many bytes they took.
func (c *Conn) frames(buf []byte) int {
	pos, n := 0, len(buf)
	for n-pos >= 2 {
		length := int(buf[pos+1] & 0x7F)
		start := pos + 2
		if length == 126 {
			if n-pos < 4 {
				break
			}
			length = int(binary.BigEndian.Uint16(buf[pos+2:]))
			start = pos + 4
		} else if length == 127 {
			if n-pos < 10 {
				break
			}
			length = int(binary.BigEndian.Uint64(buf[pos+2:]))
			start = pos + 10
		}
		end := start + length
		if end > n {
			break
		}
		payload := buf[start:end]
		fin := buf[pos]&0x80 != 0
		switch buf[pos] & 0x0F {
		case 1:
			if fin {
				c.text(payload)
			} else {
				c.firstFragment(payload)
			}
		case 0:
			c.continuation(payload, fin)
		case 8:
			c.closedByServer(payload)
		case 9:
			c.write(clientFrame(payload, 0xA))
		}
		pos = end
	}
	return pos
}

func (c *Conn) text(p []byte) {
	if bytes.HasPrefix(p, chatPrefix) {
		if !c.raw {
			c.chats.Add(1)
			if c.parse {
				c.chat(p)
			}
			return
		}
		c.chats.Add(int64(bytes.Count(p, []byte{'\n'}) + 1))
		if c.parse {
			c.lines(p)
		}
		return
	}
	if bytes.HasPrefix(p, welcomePrefix) {
		c.welcomed = true
	} else if bytes.HasPrefix(p, errorPrefix) {
		var e struct {
			Code any `json:"code"`
		}
		code := "unparsable"
		if json.Unmarshal(p, &e) == nil {
			code = "unknown"
			if e.Code != nil {
				code = fmt.Sprint(e.Code)
			}
		}
		c.sh.tally.error(code)
		if c.sender != nil {
			c.sender.doneOne(true)
		}
	}
}

// firstFragment starts a fragmented text message: a chat counts one delivery per
// line (raw) or one in all (chathub); its text is kept when this connection parses.
func (c *Conn) firstFragment(p []byte) {
	c.inChat = bytes.HasPrefix(p, chatPrefix)
	if !c.inChat {
		return
	}
	c.chats.Add(1)
	if c.raw {
		c.chats.Add(int64(bytes.Count(p, []byte{'\n'})))
	}
	if c.parse {
		c.msg = append(c.msg[:0], p...)
	}
}

func (c *Conn) continuation(p []byte, fin bool) {
	if !c.inChat {
		return
	}
	if c.raw {
		c.chats.Add(int64(bytes.Count(p, []byte{'\n'})))
	}
	if c.parse {
		c.msg = append(c.msg, p...)
	}
	if fin {
		c.inChat = false
		if c.parse {
			c.lines(c.msg)
		}
	}
}

// lines parses each chat of a (raw) message: one per line.
func (c *Conn) lines(p []byte) {
	if !c.raw {
		c.chat(p)
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.chat(p)
			return
		}
		c.chat(p[:i])
		p = p[i+1:]
	}
}

func (c *Conn) chat(p []byte) {
	i := bytes.Index(p, textKey)
	if i < 0 {
		return
	}
	p = p[i+len(textKey):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return
	}
	parts := bytes.Split(p[:j], []byte{' '})
	if len(parts) != 3 {
		return
	}
	ns, err := strconv.ParseInt(string(parts[0]), 10, 64)
	if err != nil {
		return
	}
	c.sh.tally.lat((monoNs() - ns) / 1000)
	if s := c.sender; s != nil && bytes.Equal(parts[1], s.sid) {
		s.doneOne(false)
	}
}

func (c *Conn) closedByServer(p []byte) {
	code := int32(1005)
	if len(p) >= 2 {
		code = int32(binary.BigEndian.Uint16(p))
	}
	if c.closeCode.CompareAndSwap(0, code) && !c.closing.Load() {
		c.sh.tally.error(fmt.Sprintf("close_%d", code))
		c.sh.tally.mu.Lock()
		c.sh.tally.unexpectedClose++
		c.sh.tally.mu.Unlock()
	}
	if !c.closing.Load() {
		echo := p
		if len(echo) > 2 {
			echo = echo[:2]
		}
		c.write(clientFrame(echo, 8))
	}
	c.dead.Store(true)
	c.nc.Close()
}

// writer writes a sender's frames in order until the connection ends.
func (c *Conn) writer() {
	for {
		select {
		case b := <-c.out:
			c.wmu.Lock()
			_, err := c.nc.Write(b)
			c.wmu.Unlock()
			if err != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

// readLoop counts frames until the connection ends; buf[:n] is what was read already.
func (c *Conn) readLoop(buf []byte, n int) {
	defer close(c.done)
	defer c.nc.Close()
	for {
		used := c.frames(buf[:n])
		copy(buf, buf[used:n])
		n -= used
		if n == len(buf) { // one frame larger than the buffer
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := c.nc.Read(buf[n:])
		c.sh.reads.Add(1)
		if err != nil {
			c.dead.Store(true)
			if !c.closing.Load() && c.closeCode.Load() == 0 {
				c.sh.tally.error("connection_lost")
				c.sh.tally.mu.Lock()
				c.sh.tally.unexpectedClose++
				c.sh.tally.mu.Unlock()
			}
			return
		}
		n += m
	}
}
