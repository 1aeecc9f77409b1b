// orch-shim: the per-container process that owns a runc container for its whole life, as conmon
// and containerd-shim do. It lets containers outlive an agent restart (the agent adopts them),
// keeps the exit status when nobody else is waiting, and writes the container's output to a log
// file with size rotation.
//
//   orch-shim RUNC ROOT ID BUNDLE LOGFILE EXITFILE [LOG_MAX_BYTES [STDIN_SOCKET [once|keep [tty]]]]
//
// With STDIN_SOCKET (a container with `stdin: true`), the container's stdin is a pipe the shim
// keeps open, and whatever an attached client writes to the unix socket STDIN_SOCKET goes into
// it, one client at a time. With "once" (`stdinOnce: true`), the pipe is closed when the first
// client leaves, so the container reads end of file.
//
// With "tty" (`tty: true`), the container's init gets a terminal: runc hands the shim the
// terminal's master over a console socket (STDIN_SOCKET.pty, only while `runc create` runs), and
// the shim keeps it for the container's life. What the container writes to the terminal goes to
// LOGFILE; clients of STDIN_SOCKET then speak in frames (a type byte, a 4-byte big-endian length,
// the payload): 'd' bytes typed into the terminal, 'r' a new size (width and height, 2 bytes
// each, big-endian). With "once", the first client's leaving types an end-of-file character.
//
// The first process forks and waits: it exits 0 once `runc create` and `runc start` succeeded,
// or 1 with runc's message on stderr. The forked shim becomes a session leader and a child
// subreaper (so the container's init is reaped here), copies the container's stdout and stderr
// from a pipe into LOGFILE (renamed to LOGFILE.1 when it exceeds LOG_MAX_BYTES), and when the
// container's init exits writes "<exit code> <unix seconds>" to EXITFILE (atomically) and exits.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *runc, *root, *id, *bundle, *logfile, *exitfile, *stdin_socket;
static int stdin_once = 0;
static int tty = 0;
static int master = -1;         // the terminal's master, with "tty"

static int stdin_read = -1;    // the container's end of its stdin pipe (given to runc create)
static long long log_max = 10 * 1024 * 1024;
static int log_fd = -1;
static long long log_size = 0;

static void open_log(void) {
    log_fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? st.st_size : 0;
}

static void write_log(const char *buf, ssize_t n) {
    if (log_fd < 0) return;
    if (log_size + n > log_max && log_size > 0) {
        char old[4096];
        snprintf(old, sizeof old, "%s.1", logfile);
        close(log_fd);
        rename(logfile, old);
        open_log();
        if (log_fd < 0) return;
    }
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(log_fd, buf + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; return; }
        off += w;
    }
    log_size += n;
}

// Runs runc with the given verb arguments; stdout/stderr go to `out_fd`. Returns the exit status.
static int run_runc(char *const extra[], int out_fd) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(stdin_read >= 0 ? stdin_read : devnull, 0);
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        char *argv[32];
        int i = 0;
        argv[i++] = (char *)runc; argv[i++] = "--root"; argv[i++] = (char *)root;
        for (int j = 0; extra[j] && i < 31; j++) argv[i++] = extra[j];
        argv[i] = NULL;
        execv(runc, argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void drain_nonblocking(int fd, int to_fd) {
    char buf[8192];
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) { ssize_t w = write(to_fd, buf, n); (void)w; }
}

static void write_exit(int code) {
    char tmp[4096], line[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", exitfile);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int n = snprintf(line, sizeof line, "%d %lld.%06ld\n", code, (long long)tv.tv_sec, (long)tv.tv_usec);
    ssize_t w = write(fd, line, n); (void)w;
    fsync(fd);
    close(fd);
    rename(tmp, exitfile);
}

static void write_all(int fd, const void *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, (const char *)p + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; return; }
        off += w;
    }
}

static int listen_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(addr.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 4) < 0) { int e = errno; close(fd); errno = e; return -1; }
    chmod(path, 0600);
    return fd;
}

// The terminal master runc sends over the console socket (it has connected and sent it by the
// time `runc create` returns; the message waits in the socket).
static int receive_fd(int listen_fd) {
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0) return -1;
    int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return -1;
    char name[4096];
    struct iovec iov = {.iov_base = name, .iov_len = sizeof name};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    int fd = -1;
    if (recvmsg(c, &msg, MSG_CMSG_CLOEXEC) > 0) {
        struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
        if (h && h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(h), sizeof fd);
    }
    close(c);
    return fd;
}

// Acts on the complete frames at the start of buf ('d' typed bytes, 'r' a size); returns how many
// bytes of an unfinished frame remain (moved to the start).
static size_t take_frames(unsigned char *buf, size_t n) {
    size_t off = 0;
    while (n - off >= 5) {
        size_t len = ((size_t)buf[off + 1] << 24) | ((size_t)buf[off + 2] << 16) | ((size_t)buf[off + 3] << 8) | buf[off + 4];
        if (len > 65536) { return 0; }
        if (n - off - 5 < len) break;
        unsigned char *payload = buf + off + 5;
        if (buf[off] == 'd' && master >= 0) write_all(master, payload, len);
        else if (buf[off] == 'r' && len == 4 && master >= 0) {
            struct winsize ws = {.ws_col = (payload[0] << 8) | payload[1], .ws_row = (payload[2] << 8) | payload[3]};
            ioctl(master, TIOCSWINSZ, &ws);
        }
        off += 5 + len;
    }
    memmove(buf, buf + off, n - off);
    return n - off;
}

static void ignore_signal(int sig) { (void)sig; }

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        puts("orch-shim 0.16.0");   /* the release of BuildInfo in Sources/API/Version.swift */
        return 0;
    }
    if (argc < 7) {
        fprintf(stderr, "usage: orch-shim RUNC ROOT ID BUNDLE LOGFILE EXITFILE [LOG_MAX_BYTES]\n");
        return 2;
    }
    runc = argv[1]; root = argv[2]; id = argv[3]; bundle = argv[4]; logfile = argv[5]; exitfile = argv[6];
    if (argc > 7) log_max = atoll(argv[7]);
    if (argc > 8 && argv[8][0]) stdin_socket = argv[8];
    if (argc > 9 && strcmp(argv[9], "once") == 0) stdin_once = 1;
    if (argc > 10 && strcmp(argv[10], "tty") == 0) tty = 1;
    if (tty && !stdin_socket) { fprintf(stderr, "orch-shim: tty needs STDIN_SOCKET\n"); return 2; }
    if (log_max < 4096) log_max = 4096;

    // Nothing of the caller's but stdio survives here.
    for (int fd = 3; fd < 1024; fd++) close(fd);

    int sync_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) < 0) { perror("pipe"); return 1; }
    pid_t shim = fork();
    if (shim < 0) { perror("fork"); return 1; }
    if (shim > 0) {
        // The caller's process: report what the shim says, then go.
        close(sync_pipe[1]);
        char buf[8192];
        ssize_t n, total = 0;
        int ok = 0;
        while ((n = read(sync_pipe[0], buf, sizeof buf)) != 0) {
            if (n < 0) { if (errno == EINTR) continue; break; }
            if (total == 0 && n >= 3 && memcmp(buf, "ok\n", 3) == 0) { ok = 1; break; }
            ssize_t w = write(2, buf, n); (void)w;
            total += n;
        }
        return ok ? 0 : 1;
    }
    close(sync_pipe[0]);
    setsid();
    {
        // EXITFILE.shim names this process, so the agent can tell "exited, status not yet
        // written" from "the shim is gone too".
        char path[4096], line[32];
        snprintf(path, sizeof path, "%s.shim", exitfile);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { int n = snprintf(line, sizeof line, "%d\n", getpid()); ssize_t w = write(fd, line, n); (void)w; close(fd); }
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    // The shim ends only when its container does (or by SIGKILL): `systemctl kill` of the agent's
    // unit signals every process in its cgroup, shims included, and the agent that comes back
    // adopts the containers through them. A handler that does nothing, rather than SIG_IGN, so
    // that runc and the container's processes it execs start with the default dispositions.
    struct sigaction keep = {0};
    keep.sa_handler = ignore_signal;
    keep.sa_flags = SA_RESTART;
    sigemptyset(&keep.sa_mask);
    sigaction(SIGTERM, &keep, NULL);
    sigaction(SIGINT, &keep, NULL);
    sigaction(SIGHUP, &keep, NULL);
    sigaction(SIGPIPE, &keep, NULL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);

    int out[2];
    if (pipe(out) < 0) { dprintf(sync_pipe[1], "pipe: %s\n", strerror(errno)); return 1; }
    fcntl(out[0], F_SETFD, FD_CLOEXEC);
    open_log();
    if (log_fd < 0) { dprintf(sync_pipe[1], "cannot open log file %s: %s\n", logfile, strerror(errno)); return 1; }

    // stdin: a pipe held open by the shim, fed from the attach socket.
    int stdin_write = -1, listen_fd = -1, client_fd = -1;
    if (stdin_socket && !tty) {
        int in[2];
        if (pipe(in) < 0) { dprintf(sync_pipe[1], "pipe: %s\n", strerror(errno)); return 1; }
        stdin_read = in[0];
        stdin_write = in[1];
        fcntl(stdin_write, F_SETFD, FD_CLOEXEC);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(stdin_socket) >= sizeof addr.sun_path) { dprintf(sync_pipe[1], "stdin socket path too long: %s\n", stdin_socket); return 1; }
        strcpy(addr.sun_path, stdin_socket);
        unlink(stdin_socket);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listen_fd, 4) < 0) {
            dprintf(sync_pipe[1], "cannot listen on %s: %s\n", stdin_socket, strerror(errno));
            return 1;
        }
        chmod(stdin_socket, 0600);
    }
    // tty: the console socket runc sends the terminal's master to, and the attach socket.
    int console_fd = -1;
    char console_path[4096];
    if (tty) {
        snprintf(console_path, sizeof console_path, "%s.pty", stdin_socket);
        if ((console_fd = listen_unix(console_path)) < 0 || (listen_fd = listen_unix(stdin_socket)) < 0) {
            dprintf(sync_pipe[1], "cannot listen on %s: %s\n", console_fd < 0 ? console_path : stdin_socket, strerror(errno));
            return 1;
        }
    }

    char pidfile[4096];
    snprintf(pidfile, sizeof pidfile, "%s/pid", bundle);
    char *create_plain[] = {"create", "--bundle", (char *)bundle, "--pid-file", pidfile, (char *)id, NULL};
    char *create_tty[] = {"create", "--bundle", (char *)bundle, "--pid-file", pidfile, "--console-socket", console_path, (char *)id, NULL};
    int rc = run_runc(tty ? create_tty : create_plain, out[1]);
    close(out[1]);
    if (tty) {
        if (rc == 0) master = receive_fd(console_fd);
        close(console_fd);
        unlink(console_path);
        if (rc == 0 && master < 0) {
            dprintf(sync_pipe[1], "runc sent no terminal for the container\n");
            char *del[] = {"delete", "--force", (char *)id, NULL};
            run_runc(del, devnull);
            return 1;
        }
    }
    if (stdin_read >= 0) { close(stdin_read); stdin_read = -1; }
    if (rc != 0) {
        drain_nonblocking(out[0], sync_pipe[1]);
        dprintf(sync_pipe[1], "runc create exited with %d\n", rc);
        return 1;
    }
    pid_t init = 0;
    FILE *pf = fopen(pidfile, "r");
    if (pf) { if (fscanf(pf, "%d", &init) != 1) init = 0; fclose(pf); }
    int errpipe[2];
    if (pipe(errpipe) < 0) { dprintf(sync_pipe[1], "pipe: %s\n", strerror(errno)); return 1; }
    char *start[] = {"start", (char *)id, NULL};
    rc = run_runc(start, errpipe[1]);
    close(errpipe[1]);
    if (rc != 0) {
        drain_nonblocking(errpipe[0], sync_pipe[1]);
        dprintf(sync_pipe[1], "runc start exited with %d\n", rc);
        char *del[] = {"delete", "--force", (char *)id, NULL};
        run_runc(del, devnull);
        return 1;
    }
    close(errpipe[0]);
    ssize_t w = write(sync_pipe[1], "ok\n", 3); (void)w;
    close(sync_pipe[1]);
    if (devnull > 2) close(devnull);
    dup2(log_fd, 1);
    dup2(log_fd, 2);

    // Copy output until the container's init has exited and every writer closed the pipe
    // (the kernel kills the rest of the container's pid namespace when its init dies).
    int exit_code = -1, eof = 0;
    char buf[65536];
    int src = out[0];
    if (tty) { close(out[0]); src = master; }
    unsigned char frame[65536 + 5];
    size_t framed = 0;
    for (;;) {
        struct pollfd p[3];
        int np = 0, out_ix = -1, listen_ix = -1, client_ix = -1;
        if (!eof) { p[np] = (struct pollfd){.fd = src, .events = POLLIN}; out_ix = np++; }
        if (listen_fd >= 0 && client_fd < 0) { p[np] = (struct pollfd){.fd = listen_fd, .events = POLLIN}; listen_ix = np++; }
        if (client_fd >= 0) { p[np] = (struct pollfd){.fd = client_fd, .events = POLLIN}; client_ix = np++; }
        int pr = np ? poll(p, np, eof ? 50 : 200) : (usleep(50000), 0);
        if (pr > 0 && out_ix >= 0 && (p[out_ix].revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(src, buf, sizeof buf);
            if (n > 0) write_log(buf, n);
            else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) eof = 1;  // a terminal's master reads EIO once the container is gone
        }
        if (pr > 0 && listen_ix >= 0 && (p[listen_ix].revents & POLLIN)) {
            client_fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        }
        if (pr > 0 && client_ix >= 0 && (p[client_ix].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = tty ? read(client_fd, frame + framed, sizeof frame - framed) : read(client_fd, buf, sizeof buf);
            if (n > 0 && tty) {
                framed += n;
                framed = take_frames(frame, framed);
                if (framed == sizeof frame) framed = 0;  // a frame larger than any client sends: drop it
            } else if (n > 0 && stdin_write >= 0) {
                ssize_t off = 0;
                while (off < n) {
                    ssize_t w = write(stdin_write, buf + off, n - off);
                    if (w < 0) { if (errno == EINTR) continue; break; }
                    off += w;
                }
            } else if (n <= 0) {
                close(client_fd);
                client_fd = -1;
                framed = 0;
                if (stdin_once) {
                    // The first attach session is over: the container sees end of file, and no one attaches again.
                    if (stdin_write >= 0) { close(stdin_write); stdin_write = -1; }
                    if (master >= 0) write_all(master, "\x04", 1);
                    close(listen_fd);
                    listen_fd = -1;
                    unlink(stdin_socket);
                }
            }
        }
        int status;
        pid_t r;
        while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
            if (r == init || init == 0)
                exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (r < 0 && errno == ECHILD && exit_code < 0 && init > 0 && kill(init, 0) < 0) exit_code = 255;
        if (exit_code >= 0 && eof) break;
        if (exit_code >= 0 && !eof) {
            // Drain what is buffered, but do not wait forever for a writer that escaped.
            static int grace = 0;
            if (++grace > 25) break;
        }
    }
    if (stdin_socket) unlink(stdin_socket);
    write_exit(exit_code);
    return 0;
}
