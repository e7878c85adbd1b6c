/* Signal handlers and semop, for tests/signals.rs, run with and without
 * LD_PRELOAD=libshmsem_preload.so.
 *
 *   signals query   installs handlers through every glibc call and prints
 *                   what the queries report (the output must not depend on
 *                   whether the preload library wraps the handlers);
 *   signals alarm   three rounds of alarm(1) bounding a semop that blocks,
 *                   the SIGALRM handler installed with sigaction, sigaction
 *                   with SA_RESTART and signal() (BSD: SA_RESTART); before
 *                   each semop it prints "armed", after it the result.
 *                   semop must fail with EINTR every time.
 */
#include "common.h"

static volatile sig_atomic_t plain_calls, info_calls, info_ok;

static void h1(int sig)
{
    (void)sig;
    plain_calls++;
}

static void h2(int sig, siginfo_t *si, void *ctx)
{
    info_calls++;
    info_ok = si != NULL && ctx != NULL && si->si_signo == sig && si->si_code == SI_TKILL;
}

/* glibc's other name of sigaction, and bsd_signal: not declared by its
 * headers in this mode. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);
extern __sighandler_t bsd_signal(int, __sighandler_t);

static const char *hname(void *p)
{
    if (p == (void *)h1) return "h1";
    if (p == (void *)h2) return "h2";
    if (p == (void *)SIG_DFL) return "SIG_DFL";
    if (p == (void *)SIG_IGN) return "SIG_IGN";
    if (p == (void *)SIG_HOLD) return "SIG_HOLD";
    if (p == (void *)SIG_ERR) return "SIG_ERR";
    return "OTHER";
}

/* The handler of an action, whichever member the flags name. */
static void *handler_of(const struct sigaction *a)
{
    return (a->sa_flags & SA_SIGINFO) ? (void *)a->sa_sigaction : (void *)a->sa_handler;
}

static void print_action(const char *what, const struct sigaction *a)
{
    const int shown = SA_SIGINFO | SA_RESTART | SA_RESETHAND | SA_NODEFER | SA_ONSTACK;
    printf("%s: %s flags %#x mask-usr2 %d\n", what, hname(handler_of(a)),
           a->sa_flags & shown, sigismember(&a->sa_mask, SIGUSR2));
}

static void query(const char *what, int sig)
{
    struct sigaction a;
    memset(&a, 0, sizeof a);
    CHECK(sigaction(sig, NULL, &a) == 0);
    print_action(what, &a);
}

static void install(int sig, void *h, int flags, int mask_usr2, struct sigaction *old)
{
    struct sigaction a;
    memset(&a, 0, sizeof a);
    if (flags & SA_SIGINFO)
        a.sa_sigaction = (void (*)(int, siginfo_t *, void *))h;
    else
        a.sa_handler = (void (*)(int))h;
    a.sa_flags = flags;
    sigemptyset(&a.sa_mask);
    if (mask_usr2)
        sigaddset(&a.sa_mask, SIGUSR2);
    CHECK(sigaction(sig, &a, old) == 0);
}

/* siginterrupt and sigset are deprecated, and what programs still call. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void do_query(void)
{
    struct sigaction old;

    query("initial USR1", SIGUSR1);
    install(SIGUSR1, h1, SA_RESTART, 1, &old);
    print_action("old after h1", &old);
    query("USR1 h1", SIGUSR1);
    install(SIGUSR1, h2, SA_SIGINFO, 0, &old);
    print_action("old after h2", &old);
    query("USR1 h2", SIGUSR1);
    raise(SIGUSR1);
    printf("h2 ran %d, its arguments right %d\n", (int)info_calls, (int)info_ok);

    /* A one-shot handler: after it ran, the kernel's SIG_DFL. */
    install(SIGUSR1, h1, SA_RESETHAND, 0, NULL);
    query("USR1 resethand", SIGUSR1);
    plain_calls = 0;
    raise(SIGUSR1);
    printf("h1 ran %d\n", (int)plain_calls);
    query("USR1 after the one shot", SIGUSR1);

    /* __sigaction is sigaction. */
    install(SIGUSR1, h1, 0, 0, NULL);
    CHECK(__sigaction(SIGUSR1, NULL, &old) == 0);
    print_action("__sigaction query", &old);

    /* SIG_IGN passes through. */
    install(SIGUSR1, (void *)SIG_IGN, 0, 0, &old);
    print_action("old before SIG_IGN", &old);
    plain_calls = 0;
    raise(SIGUSR1);
    printf("ignored: h1 ran %d\n", (int)plain_calls);
    query("USR1 ignored", SIGUSR1);

    /* signal(): BSD semantics, and the old handler as installed. */
    printf("signal h1 -> old %s\n", hname((void *)signal(SIGUSR2, h1)));
    printf("signal SIG_IGN -> old %s\n", hname((void *)signal(SIGUSR2, SIG_IGN)));
    printf("signal h1 -> old %s\n", hname((void *)signal(SIGUSR2, h1)));
    query("USR2 signal", SIGUSR2);
    plain_calls = 0;
    raise(SIGUSR2);
    printf("h1 ran %d\n", (int)plain_calls);
    /* siginterrupt rewrites the flags inside glibc. */
    CHECK(siginterrupt(SIGUSR2, 1) == 0);
    query("USR2 siginterrupt", SIGUSR2);
    raise(SIGUSR2);
    printf("h1 ran %d\n", (int)plain_calls);
    printf("bsd_signal h1 -> old %s\n", hname((void *)bsd_signal(SIGUSR2, h1)));
    printf("ssignal SIG_DFL -> old %s\n", hname((void *)ssignal(SIGUSR2, SIG_DFL)));

    /* sysv_signal and __sysv_signal: one-shot handlers. */
    printf("sysv_signal h1 -> old %s\n", hname((void *)sysv_signal(SIGUSR2, h1)));
    query("USR2 sysv_signal", SIGUSR2);
    raise(SIGUSR2);
    printf("h1 ran %d\n", (int)plain_calls);
    query("USR2 after the sysv one shot", SIGUSR2);
    printf("__sysv_signal h1 -> old %s\n", hname((void *)__sysv_signal(SIGUSR2, h1)));
    printf("__sysv_signal SIG_DFL -> old %s\n", hname((void *)__sysv_signal(SIGUSR2, SIG_DFL)));

    /* sigset and SIG_HOLD. */
    printf("sigset h1 -> old %s\n", hname((void *)sigset(SIGUSR2, h1)));
    printf("sigset SIG_HOLD -> old %s\n", hname((void *)sigset(SIGUSR2, SIG_HOLD)));
    printf("sigset SIG_DFL -> old %s\n", hname((void *)sigset(SIGUSR2, SIG_DFL)));
    printf("sigset h1 -> old %s\n", hname((void *)sigset(SIGUSR2, h1)));
    query("USR2 sigset", SIGUSR2);

    /* Errors, and errno left alone on success. */
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = h1;
    static const int bad[] = {SIGKILL, 0, 65};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        int r = sigaction(bad[i], &a, NULL);
        int e = errno;
        printf("sigaction %d: %d %s\n", bad[i], r, errname(e));
    }
    errno = 0;
    void *r = (void *)signal(SIGKILL, h1);
    int e = errno;
    printf("signal KILL: %s %s\n", hname(r), errname(e));
    query("KILL", SIGKILL);
    errno = 4321;
    CHECK(sigaction(SIGUSR1, &a, NULL) == 0);
    printf("errno after sigaction %d\n", errno);
    errno = 4321;
    CHECK(signal(SIGUSR1, h1) != SIG_ERR);
    printf("errno after signal %d\n", errno);
}
#pragma GCC diagnostic pop

static void on_alarm(int sig)
{
    (void)sig;
    plain_calls++;
}

static void do_alarm(void)
{
    int id = semget(IPC_PRIVATE, 1, 0600);
    CHECK(id >= 0);
    for (int round = 0; round < 3; round++) {
        if (round < 2) {
            install(SIGALRM, on_alarm, round == 1 ? SA_RESTART : 0, 0, NULL);
        } else {
            CHECK(signal(SIGALRM, on_alarm) != SIG_ERR);
        }
        plain_calls = 0;
        struct sembuf op = {0, -1, 0};
        alarm(1);
        printf("armed\n");
        fflush(stdout);
        int r = semop(id, &op, 1);
        int e = errno;
        printf("round %d: semop %d %s, handler ran %d\n", round, r, errname(r ? e : 0),
               (int)plain_calls);
        fflush(stdout);
    }
    CHECK(semctl(id, 0, IPC_RMID) == 0);
}

int main(int argc, char **argv)
{
    alarm(30); /* the safety net; each alarm round re-arms it */
    if (argc == 2 && strcmp(argv[1], "query") == 0) {
        do_query();
    } else if (argc == 2 && strcmp(argv[1], "alarm") == 0) {
        do_alarm();
    } else {
        fprintf(stderr, "usage: signals query|alarm\n");
        return 2;
    }
    fflush(stdout);
    return 0;
}
