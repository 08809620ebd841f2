/* How long threads of a CPython process wait for the GIL, by what they had
 * just come back from: an LD_PRELOAD library for bench/gil_waits.py.
 *
 * CPython 3.11 waits for the GIL in take_gil() with pthread_cond_timedwait
 * on the GIL's condition (a switch interval at a time, then it asks the
 * holder to drop it); its thread locks are semaphores (sem_wait,
 * sem_clockwait), so in a process without other condition variables every
 * timed condition wait is a wait for the GIL.
 *
 * An episode begins when a thread returns from fdatasync (the WAL's sync),
 * epoll_wait / epoll_pwait (the event loop's wake-up) or a semaphore wait
 * (a lock, a condition, a queue: a thread woken for work, the WAL's writer
 * among them) and ends when the thread next enters one of those. Each
 * episode is written as one record to TIDELOG_GIL_PROBE.<pid> (only in a
 * process one of whose arguments is TIDELOG_GIL_PROBE_ARGUMENT, when set;
 * a file mapped shared, so nothing is lost
 * when the process ends without its atexit handlers): when it began, how
 * long the blocking call took, how long the episode lasted, how much of
 * it and in how many waits the thread waited for the GIL (and of that, how
 * long it was runnable but had no CPU: the kernel's run delay; both also
 * up to the episode's first send), how many
 * send() and write() calls it made (call_soon_threadsafe's wake-up of a
 * loop is one: a send on asyncio's, a write to an eventfd on uvloop's).
 * Also each time a thread was made to drop the GIL (it had run Python a
 * whole switch interval while another waited), one record with its thread.
 * A measuring aid only: nothing of the server loads it unless asked.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY (1u << 21)

enum { KIND_NONE = 0, KIND_FDATASYNC = 1, KIND_EPOLL = 2, KIND_FORCED_DROP = 3, KIND_WOKEN = 4 };

struct header {
    uint64_t magic;
    uint64_t count;
    uint64_t monotonic_ns;
    uint64_t realtime_ns;
};

struct record {
    uint64_t returned_ns;  /* CLOCK_MONOTONIC, the blocking call's return */
    uint64_t call_ns;      /* the blocking call's own duration */
    uint64_t episode_ns;   /* its return to the thread's next block */
    uint64_t gil_ns;       /* of it, waiting for the GIL */
    uint64_t first_send_ns; /* its return to its first send or write (0: none) */
    uint32_t tid;
    uint16_t gil_waits;
    uint8_t kind;
    uint8_t sends;
    uint64_t gil_run_delay_ns; /* of the GIL's waits, runnable without a CPU */
    /* Of gil_ns and gil_run_delay_ns, the part before the first send (all
     * of it when none): a sync's waits after its wake-up of the loop
     * overlap the loop's own turn, so they are no part of the chain. */
    uint64_t gil_before_send_ns;
    uint64_t run_delay_before_send_ns;
};

static struct header *file_header;
static struct record *records;
static pthread_once_t opened = PTHREAD_ONCE_INIT;

static __thread uint8_t episode_kind;
static __thread uint64_t episode_start, episode_call, episode_gil, episode_first_send;
static __thread uint64_t episode_run_delay;
static __thread uint64_t episode_gil_before_send, episode_run_delay_before_send;
static __thread int schedstat_fd = -1;
static __thread uint32_t episode_waits, episode_sends;

static uint64_t now(clockid_t clock) {
    struct timespec at;
    clock_gettime(clock, &at);
    return (uint64_t)at.tv_sec * 1000000000u + (uint64_t)at.tv_nsec;
}

/* Whether one of the process's arguments is ``word`` (true without one):
 * the probe is inherited by every process of a run, the benchmark's own
 * client and its mock cluster among them, whose timed waits it would
 * otherwise slow with its schedstat reads. */
static int argument_is(const char *word) {
    if (word == NULL || *word == 0) return 1;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char text[8192];
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return 0;
    text[got] = 0;
    for (const char *argument = text; argument < text + got; argument += strlen(argument) + 1)
        if (strcmp(argument, word) == 0) return 1;
    return 0;
}

static void open_file(void) {
    const char *prefix = getenv("TIDELOG_GIL_PROBE");
    if (prefix == NULL || !argument_is(getenv("TIDELOG_GIL_PROBE_ARGUMENT"))) return;
    char path[4096];
    snprintf(path, sizeof path, "%s.%d", prefix, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    size_t size = sizeof(struct header) + (size_t)CAPACITY * sizeof(struct record);
    if (ftruncate(fd, (off_t)size) != 0) { close(fd); return; }
    void *mapped = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mapped == MAP_FAILED) return;
    file_header = mapped;
    records = (struct record *)(file_header + 1);
    file_header->monotonic_ns = now(CLOCK_MONOTONIC);
    file_header->realtime_ns = now(CLOCK_REALTIME);
    file_header->magic = 0x65626f72704c4947ull; /* "GILprobe" */
}

static struct record *next_record(void) {
    pthread_once(&opened, open_file);
    if (records == NULL) return NULL;
    uint64_t at = __atomic_fetch_add(&file_header->count, 1, __ATOMIC_RELAXED);
    return at < CAPACITY ? &records[at] : NULL;
}

static void end_episode(void) {
    if (episode_kind == KIND_NONE) return;
    {
        struct record *r = next_record();
        if (r != NULL) {
            r->returned_ns = episode_start;
            r->call_ns = episode_call;
            r->episode_ns = now(CLOCK_MONOTONIC) - episode_start;
            r->gil_ns = episode_gil;
            r->first_send_ns = episode_first_send;
            r->gil_run_delay_ns = episode_run_delay;
            r->gil_before_send_ns = episode_sends ? episode_gil_before_send : episode_gil;
            r->run_delay_before_send_ns =
                episode_sends ? episode_run_delay_before_send : episode_run_delay;
            r->tid = (uint32_t)syscall(SYS_gettid);
            r->gil_waits = episode_waits > 0xffff ? 0xffff : (uint16_t)episode_waits;
            r->kind = episode_kind;
            r->sends = episode_sends > 0xff ? 0xff : (uint8_t)episode_sends;
        }
    }
    episode_kind = KIND_NONE;
}

static void begin_episode(uint8_t kind, uint64_t called, uint64_t returned) {
    episode_kind = kind;
    episode_start = returned;
    episode_call = returned - called;
    episode_gil = 0;
    episode_waits = 0;
    episode_sends = 0;
    episode_first_send = 0;
    episode_run_delay = 0;
}

#define NO_RUN_DELAY UINT64_MAX

/* A thread's schedstat file is closed when the thread ends: a process that
 * starts threads by the thousand would otherwise run out of descriptors
 * under the probe alone. */
static pthread_key_t schedstat_key;
static pthread_once_t schedstat_key_made = PTHREAD_ONCE_INIT;

static void close_schedstat(void *fd_plus_one) { close((int)(intptr_t)fd_plus_one - 1); }

static void make_schedstat_key(void) { pthread_key_create(&schedstat_key, close_schedstat); }

/* The thread's time runnable but not running (Linux's schedstat, its
 * second field), in ns; NO_RUN_DELAY where it cannot be read. */
static uint64_t run_delay(void) {
    if (schedstat_fd < 0) {
        schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (schedstat_fd >= 0) {
            pthread_once(&schedstat_key_made, make_schedstat_key);
            pthread_setspecific(schedstat_key, (void *)(intptr_t)(schedstat_fd + 1));
        }
    }
    char text[96];
    ssize_t got = schedstat_fd < 0 ? -1 : pread(schedstat_fd, text, sizeof text - 1, 0);
    if (got <= 0) return NO_RUN_DELAY;
    text[got] = 0;
    char *field = strchr(text, ' ');
    return field == NULL ? NO_RUN_DELAY : strtoull(field + 1, NULL, 10);
}

static void note_send(void) {
    if (episode_kind != KIND_NONE && episode_sends++ == 0) {
        episode_first_send = now(CLOCK_MONOTONIC) - episode_start;
        episode_gil_before_send = episode_gil;
        episode_run_delay_before_send = episode_run_delay;
    }
}

/* The function this library stands in front of (``self``, as declared by
 * the system's headers), at the version CPython was linked against. Looked
 * up on the first call, by whichever threads make it at once: each finds
 * the same address, and the atomic store and load keep a thread from
 * reading the pointer half written. */
#define NEXT(self, version)                                                     \
    static __typeof__(&self) found_##self;                                      \
    __typeof__(&self) real = __atomic_load_n(&found_##self, __ATOMIC_ACQUIRE);  \
    if (real == NULL) {                                                         \
        real = (__typeof__(&self))dlvsym(RTLD_NEXT, #self, version);            \
        if (real == NULL) real = (__typeof__(&self))dlsym(RTLD_NEXT, #self);    \
        __atomic_store_n(&found_##self, real, __ATOMIC_RELEASE);                \
    }

/* A blocking call (an int-returning one) that ends the thread's episode
 * and begins one of ``kind`` on its return, errno kept as it set it. */
#define BLOCKING(kind, call)                                     \
    end_episode();                                               \
    uint64_t called = now(CLOCK_MONOTONIC);                      \
    int result = call;                                           \
    int saved = errno;                                           \
    begin_episode(kind, called, now(CLOCK_MONOTONIC));           \
    errno = saved;                                               \
    return result

int fdatasync(int fd) {
    NEXT(fdatasync, "GLIBC_2.2.5");
    BLOCKING(KIND_FDATASYNC, real(fd));
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    NEXT(epoll_wait, "GLIBC_2.3.2");
    BLOCKING(KIND_EPOLL, real(epfd, events, maxevents, timeout));
}

/* uvloop's (libuv's) poll. */
int epoll_pwait(
    int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *mask) {
    NEXT(epoll_pwait, "GLIBC_2.6");
    BLOCKING(KIND_EPOLL, real(epfd, events, maxevents, timeout, mask));
}

int sem_wait(sem_t *sem) {
    NEXT(sem_wait, "GLIBC_2.34");
    BLOCKING(KIND_WOKEN, real(sem));
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *abstime) {
    NEXT(sem_clockwait, "GLIBC_2.34");
    BLOCKING(KIND_WOKEN, real(sem, clock, abstime));
}

ssize_t send(int fd, const void *buffer, size_t size, int flags) {
    NEXT(send, "GLIBC_2.2.5");
    note_send();
    return real(fd, buffer, size, flags);
}

/* uvloop's call_soon_threadsafe wakes its loop with a write to an eventfd. */
ssize_t write(int fd, const void *buffer, size_t size) {
    NEXT(write, "GLIBC_2.2.5");
    note_send();
    return real(fd, buffer, size);
}

int pthread_cond_timedwait(
    pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *abstime) {
    NEXT(pthread_cond_timedwait, "GLIBC_2.3.2");
    pthread_once(&opened, open_file);
    if (records == NULL) return real(cond, mutex, abstime);
    /* Read with the GIL's mutex held: a microsecond or two the holder's
     * hand-over may wait, against waits of milliseconds. The clock's
     * readings enclose the schedstat's, so a preemption between them
     * (likely on a loaded machine) is counted in the wait as well as in
     * its run delay, never in the run delay alone: that made the run
     * delay more than the wait it is a part of. */
    uint64_t called = now(CLOCK_MONOTONIC);
    uint64_t delayed = run_delay();
    int result = real(cond, mutex, abstime);
    uint64_t delayed_after = run_delay();
    episode_gil += now(CLOCK_MONOTONIC) - called;
    /* Only a difference of two readings: one unreadable (the first open
     * refused, say) would otherwise add the thread's whole life's delay,
     * or wrap below zero. */
    if (delayed != NO_RUN_DELAY && delayed_after != NO_RUN_DELAY && delayed_after >= delayed)
        episode_run_delay += delayed_after - delayed;
    episode_waits++;
    return result;
}

/* CPython waits here (FORCE_SWITCHING) after it was made to drop the GIL:
 * it had run Python for a whole switch interval while another thread
 * waited. Its thread is the one the waiter waited for. An undercount: it
 * waits only if it gets here before the waiter has taken the GIL (the
 * waiter, once it runs, clears the request), which in a test of one
 * thread spinning beside one syncing was 3 to 37 of 68 to 100 hand-offs. (libuv's idle
 * workers wait here too: bench/gil_waits.py counts Python threads only.) */
int pthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex) {
    NEXT(pthread_cond_wait, "GLIBC_2.3.2");
    uint64_t called = now(CLOCK_MONOTONIC);
    int result = real(cond, mutex);
    struct record *r = next_record();
    if (r != NULL) {
        uint64_t returned = now(CLOCK_MONOTONIC);
        memset(r, 0, sizeof *r);
        r->returned_ns = returned;
        r->call_ns = returned - called;
        r->tid = (uint32_t)syscall(SYS_gettid);
        r->kind = KIND_FORCED_DROP;
    }
    return result;
}
