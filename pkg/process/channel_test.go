package process

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// TestChannelReadsPastPeerReset: a peer that exits with messages of ours
// unread makes the kernel report ECONNRESET once, before what the peer
// sent; those messages (handed-over clients among them) must still be
// read, descriptors and all, and then the end.
func TestChannelReadsPastPeerReset(t *testing.T) {
	master, worker, err := NewChannelPair()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	if err := worker.SendFDs(&Message{Type: MsgClients, Clients: []proxy.Handoff{{Pool: "p"}}}, fds[:1]); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	// Unread by the worker when it goes.
	if err := master.Send(&Message{Type: MsgStats}); err != nil {
		t.Fatal(err)
	}
	worker.File().Close()
	m, _, err := master.Recv()
	if err != nil {
		t.Fatalf("the worker's last message was lost: %v", err)
	}
	if m.Type != MsgClients || len(m.FDs) != 1 || m.Clients[0].Pool != "p" {
		t.Fatalf("got %+v", m)
	}
	// The descriptor is the client's socket: it reaches its peer.
	if _, err := unix.Write(m.FDs[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if n, _ := unix.Read(fds[1], b); n != 1 || b[0] != 'x' {
		t.Fatalf("read %d %q through the passed descriptor", n, b)
	}
	closeFDs(m.FDs)
	if _, _, err := master.Recv(); !errors.Is(err, errChannelClosed) {
		t.Fatalf("after the last message: %v, want the end", err)
	}
}
