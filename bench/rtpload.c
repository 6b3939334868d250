/* rtpload: the RTP load generator of bench/rtp_relay.py (built and driven by bench/rtpload.py; read
 * that module's docstring for why it is C and how to read its figures).
 *
 *   rtpload --calls N --warmup-ms W --measure-ms M --drain-ms D [--direct] [--host 127.0.0.1]
 *
 * N calls, each two G.711 streams (caller -> callee, callee -> caller), 50 packets/s each way, 172-byte
 * RTP packets (RFC 3550 §5.1 header, 12 bytes, then 160 bytes of PCMU), on a real 20 ms schedule. Socket
 * 2i is call i's caller, socket 2i+1 its callee; stream j is sent from socket j and received on socket
 * j^1. Streams are spread over twenty 1 ms slots of the 20 ms period, as independent calls would be.
 *
 * Protocol on stdin/stdout (one line each):
 *   out: "ports P0 P1 ... P(2N-1)"      the local port of each socket (tell the relay: these are the remotes)
 *   in:  "relay D0 D1 ... D(2N-1)"      where stream j is sent (the relay's port facing socket j);
 *                                        not read with --direct, where stream j goes straight to socket j^1
 *   out: "result key=value ..."         after warm-up + measurement + drain
 *
 * Payload bytes 0-7: the send time (CLOCK_REALTIME, ns, host order), 8-11: the stream number. The
 * receive time is the kernel's (SO_TIMESTAMPNS: when the packet reached our socket), so latency does
 * not include how late this process reads. SO_RXQ_OVFL counts packets our own sockets dropped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define PACKET 172
#define HEADER 12
#define PERIOD_NS 20000000LL
#define SLOTS 20
#define SLOT_NS (PERIOD_NS / SLOTS)
#define BATCH 8
#define SSRC_BASE 0x48a70000u
#define LATE_BINS 100000 /* send lateness histogram, 10 us bins: up to 1 s */

typedef struct {
    int fd;                  /* the socket this stream is sent from (socket j for stream j) */
    struct sockaddr_in dst;  /* the relay's port for it (or socket j^1 with --direct) */
    uint16_t seq0;
    uint32_t ts0;
    uint32_t sent;           /* packets sent, warm-up included */
    uint32_t dup;
    int64_t *lat;            /* by packet index: one-way latency in ns, -1 while not received */
    uint32_t ovfl;           /* SO_RXQ_OVFL last seen on socket j (drops of the stream received there) */
} stream_t;

static stream_t *streams;
static int nstreams;
static int *slot_streams[SLOTS];
static int slot_count[SLOTS];
static uint64_t late_hist[LATE_BINS];
static uint64_t late_max_ns;
static uint64_t send_errors, wrong, bad;

static int64_t now_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "rtpload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void send_slot(long slot, int64_t t0_mono, int measured) {
    int phase = (int)(slot % SLOTS);
    uint32_t k = (uint32_t)(slot / SLOTS);
    unsigned char pkt[PACKET];
    memset(pkt + HEADER, 0xff, PACKET - HEADER);
    for (int i = 0; i < slot_count[phase]; i++) {
        int j = slot_streams[phase][i];
        stream_t *s = &streams[j];
        uint16_t seq = (uint16_t)(s->seq0 + k);
        uint32_t ts = s->ts0 + k * 160u;
        uint32_t ssrc = SSRC_BASE + (uint32_t)j;
        pkt[0] = 0x80;
        pkt[1] = (unsigned char)(k == 0 ? 0x80 : 0x00); /* PT 0 (PCMU), marker on the first packet */
        pkt[2] = (unsigned char)(seq >> 8);
        pkt[3] = (unsigned char)seq;
        uint32_t nts = htonl(ts), nssrc = htonl(ssrc), stream = (uint32_t)j;
        memcpy(pkt + 4, &nts, 4);
        memcpy(pkt + 8, &nssrc, 4);
        memcpy(pkt + HEADER + 8, &stream, 4);
        int64_t stamp = now_ns(CLOCK_REALTIME);
        memcpy(pkt + HEADER, &stamp, 8);
        s->sent = k + 1; /* a packet that failed to leave counts as sent and lost, and as a send error */
        if (send(s->fd, pkt, PACKET, 0) != PACKET) {
            send_errors++;
            continue;
        }
        if (measured) {
            int64_t late = now_ns(CLOCK_MONOTONIC) - (t0_mono + slot * SLOT_NS);
            if (late < 0) late = 0;
            if ((uint64_t)late > late_max_ns) late_max_ns = (uint64_t)late;
            int64_t bin = late / 10000;
            late_hist[bin < LATE_BINS ? bin : LATE_BINS - 1]++;
        }
    }
}

static void receive(int sock, uint32_t max_packets) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    static unsigned char bufs[BATCH][2048];
    static unsigned char ctrl[BATCH][CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t))];
    stream_t *s = &streams[sock ^ 1]; /* the stream that arrives on socket `sock` */
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = ctrl[i];
            msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
        }
        int n = recvmmsg(streams[sock].fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            int64_t rx = -1;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                if (c->cmsg_level != SOL_SOCKET) continue;
                if (c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec t;
                    memcpy(&t, CMSG_DATA(c), sizeof t);
                    rx = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
                } else if (c->cmsg_type == SO_RXQ_OVFL) {
                    uint32_t drops;
                    memcpy(&drops, CMSG_DATA(c), sizeof drops);
                    if (drops > streams[sock].ovfl) streams[sock].ovfl = drops;
                }
            }
            unsigned char *p = bufs[i];
            if (msgs[i].msg_len != PACKET || (p[0] >> 6) != 2 || rx < 0) {
                bad++;
                continue;
            }
            uint32_t stream;
            memcpy(&stream, p + HEADER + 8, 4);
            if ((int)stream != (sock ^ 1)) {
                wrong++;
                continue;
            }
            uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
            uint32_t k = (uint16_t)(seq - s->seq0);
            if (k >= max_packets) {
                bad++;
                continue;
            }
            int64_t tx;
            memcpy(&tx, p + HEADER, 8);
            if (s->lat[k] >= 0) {
                s->dup++;
                continue;
            }
            s->lat[k] = rx - tx;
        }
        if (n < BATCH) return;
    }
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double late_quantile(double q) {
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < LATE_BINS; i++) total += late_hist[i];
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)(total - 1));
    for (int i = 0; i < LATE_BINS; i++) {
        seen += late_hist[i];
        if (seen > rank) return (i + 1) * 10.0;
    }
    return LATE_BINS * 10.0;
}

int main(int argc, char **argv) {
    long calls = 0, warmup_ms = 1000, measure_ms = 10000, drain_ms = 500;
    int direct = 0;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--direct")) direct = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--calls")) calls = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--warmup-ms")) warmup_ms = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--measure-ms")) measure_ms = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--drain-ms")) drain_ms = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--host")) host = argv[++i];
        else {
            fprintf(stderr, "rtpload: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    long total_slots = (warmup_ms + measure_ms) / (SLOT_NS / 1000000);
    total_slots -= total_slots % SLOTS;
    uint32_t max_packets = (uint32_t)(total_slots / SLOTS);
    uint32_t first_measured = (uint32_t)((warmup_ms + 19) / 20);
    if (calls < 1 || measure_ms < 20 || warmup_ms < 0 || max_packets > 60000 || first_measured >= max_packets) {
        fprintf(stderr, "rtpload: need --calls >= 1 and 20 ms <= warm-up + measurement <= 1200 s\n");
        return 2;
    }
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    nstreams = (int)(2 * calls);
    streams = calloc((size_t)nstreams, sizeof *streams);
    if (!streams) die("calloc");
    struct in_addr addr;
    if (inet_pton(AF_INET, host, &addr) != 1) {
        fprintf(stderr, "rtpload: --host %s is not an IPv4 address\n", host);
        return 2;
    }
    srandom((unsigned)now_ns(CLOCK_MONOTONIC));
    printf("ports");
    for (int j = 0; j < nstreams; j++) {
        stream_t *s = &streams[j];
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) die("socket (raise ulimit -n?)");
        int one = 1, rcv = 1 << 20;
        setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        setsockopt(s->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr = addr, .sin_port = 0};
        if (bind(s->fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
        socklen_t len = sizeof local;
        getsockname(s->fd, (struct sockaddr *)&local, &len);
        printf(" %u", ntohs(local.sin_port));
        s->dst = local; /* with --direct, socket j^1 sends here */
        s->seq0 = (uint16_t)random();
        s->ts0 = (uint32_t)random();
        s->lat = malloc(max_packets * sizeof *s->lat);
        if (!s->lat) die("malloc");
        for (uint32_t k = 0; k < max_packets; k++) s->lat[k] = -1;
    }
    printf("\n");
    fflush(stdout);
    if (direct) {
        for (int j = 0; j < nstreams; j += 2) {
            struct sockaddr_in a = streams[j].dst;
            streams[j].dst = streams[j + 1].dst;
            streams[j + 1].dst = a;
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        if (getline(&line, &cap, stdin) < 0 || strncmp(line, "relay", 5) != 0) {
            fprintf(stderr, "rtpload: expected a 'relay P0 P1 ...' line on stdin\n");
            return 2;
        }
        char *p = line + 5;
        for (int j = 0; j < nstreams; j++) {
            char *end;
            long port = strtol(p, &end, 10);
            if (end == p || port < 1 || port > 65535) {
                fprintf(stderr, "rtpload: the relay line has no valid port for stream %d\n", j);
                return 2;
            }
            streams[j].dst.sin_port = htons((uint16_t)port);
            p = end;
        }
        free(line);
    }
    for (int j = 0; j < nstreams; j++) {
        if (connect(streams[j].fd, (struct sockaddr *)&streams[j].dst, sizeof streams[j].dst) < 0) die("connect");
        int call = j / 2;
        int phase = (j % 2 == 0 ? call : call + SLOTS / 2) % SLOTS;
        slot_count[phase]++;
    }
    for (int p = 0; p < SLOTS; p++) {
        slot_streams[p] = malloc((size_t)(slot_count[p] ? slot_count[p] : 1) * sizeof(int));
        slot_count[p] = 0;
    }
    for (int j = 0; j < nstreams; j++) {
        int call = j / 2;
        int phase = (j % 2 == 0 ? call : call + SLOTS / 2) % SLOTS;
        slot_streams[phase][slot_count[phase]++] = j;
    }

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    if (tfd < 0) die("timerfd_create");
    int64_t t0 = now_ns(CLOCK_MONOTONIC) + 50000000LL;
    struct itimerspec spec = {.it_interval = {0, SLOT_NS}, .it_value = {t0 / 1000000000LL, t0 % 1000000000LL}};
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) die("timerfd_settime");

    long next_slot = 0, measure_slot = (long)first_measured * SLOTS, sweep = 0;
    int64_t drain_until = 0, wall_start = 0, wall_end = 0;
    struct rusage ru_start = {0}, ru_end = {0};
    for (;;) {
        uint64_t expirations;
        if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EINTR) die("read timerfd");
        int64_t now = now_ns(CLOCK_MONOTONIC);
        while (next_slot < total_slots && t0 + next_slot * SLOT_NS <= now) {
            if (next_slot == measure_slot) {
                getrusage(RUSAGE_SELF, &ru_start);
                wall_start = now_ns(CLOCK_MONOTONIC);
            }
            send_slot(next_slot, t0, next_slot >= measure_slot);
            next_slot++;
            if (next_slot == total_slots) {
                getrusage(RUSAGE_SELF, &ru_end);
                wall_end = now_ns(CLOCK_MONOTONIC);
                drain_until = wall_end + drain_ms * 1000000LL;
            }
        }
        /* Receive: each tick reads one twentieth of the sockets, so every socket is read every 20 ms,
         * about one packet per read. The kernel's receive time stamps make reading late harmless. */
        for (int j = (int)(sweep % SLOTS); j < nstreams; j += SLOTS) receive(j, max_packets);
        sweep++;
        if (drain_until && now_ns(CLOCK_MONOTONIC) >= drain_until) break;
    }

    uint64_t sent = 0, received = 0, dups = 0, drops = 0, total_late = 0;
    int64_t lat_min = INT64_MAX;
    size_t cap = 0, count = 0;
    for (int j = 0; j < nstreams; j++) cap += streams[j].sent > first_measured ? streams[j].sent - first_measured : 0;
    int64_t *added = malloc((cap ? cap : 1) * sizeof *added);
    if (!added) die("malloc");
    for (int j = 0; j < nstreams; j++) {
        stream_t *s = &streams[j];
        dups += s->dup;
        drops += streams[j].ovfl;
        int64_t smin = INT64_MAX;
        for (uint32_t k = first_measured; k < s->sent; k++) {
            sent++;
            if (s->lat[k] >= 0) {
                received++;
                if (s->lat[k] < smin) smin = s->lat[k];
            }
        }
        if (smin == INT64_MAX) continue;
        if (smin < lat_min) lat_min = smin;
        for (uint32_t k = first_measured; k < s->sent; k++)
            if (s->lat[k] >= 0) added[count++] = s->lat[k] - smin;
    }
    qsort(added, count, sizeof *added, cmp64);
    for (int i = 0; i < LATE_BINS; i++) total_late += late_hist[i];
    double p50 = count ? (double)added[(size_t)(0.50 * (double)(count - 1))] / 1000.0 : 0;
    double p99 = count ? (double)added[(size_t)(0.99 * (double)(count - 1))] / 1000.0 : 0;
    double p999 = count ? (double)added[(size_t)(0.999 * (double)(count - 1))] / 1000.0 : 0;
    double amax = count ? (double)added[count - 1] / 1000.0 : 0;
    double cpu = 0;
    if (wall_end > wall_start) {
        double used = (double)(ru_end.ru_utime.tv_sec - ru_start.ru_utime.tv_sec)
                      + (double)(ru_end.ru_stime.tv_sec - ru_start.ru_stime.tv_sec)
                      + (double)(ru_end.ru_utime.tv_usec - ru_start.ru_utime.tv_usec) / 1e6
                      + (double)(ru_end.ru_stime.tv_usec - ru_start.ru_stime.tv_usec) / 1e6;
        cpu = used / ((double)(wall_end - wall_start) / 1e9);
    }
    uint64_t scheduled = (uint64_t)nstreams * (max_packets - first_measured);
    printf("result calls=%ld scheduled=%lu sent=%lu received=%lu lost=%lu duplicates=%lu wrong=%lu bad=%lu "
           "send_errors=%lu generator_drops=%lu latency_min_us=%.1f jitter_p50_us=%.1f jitter_p99_us=%.1f "
           "jitter_p999_us=%.1f jitter_max_us=%.1f send_late_p99_us=%.1f send_late_max_us=%.1f generator_cpu=%.3f\n",
           calls, (unsigned long)scheduled, (unsigned long)sent, (unsigned long)received,
           (unsigned long)(sent - received), (unsigned long)dups, (unsigned long)wrong, (unsigned long)bad,
           (unsigned long)send_errors, (unsigned long)drops, lat_min == INT64_MAX ? 0.0 : (double)lat_min / 1000.0,
           p50, p99, p999, amax, total_late ? late_quantile(0.99) : 0.0, (double)late_max_ns / 1000.0, cpu);
    fflush(stdout);
    return 0;
}
