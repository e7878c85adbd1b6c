/* Random hostile calls at the C level (tests/hostile_calls.rs runs this
 * against the kernel and under LD_PRELOAD=libshmsem_preload.so and compares
 * the output line by line).
 *
 * Seeded: the same seed makes the same calls. Every call goes through the
 * glibc function or through syscall(), with arguments out of range and
 * pointers that are NULL, wild, into a PROT_NONE page, into a read-only
 * page, or straddling the end of a readable page. Nothing blocks for long:
 * a call that may sleep has IPC_NOWAIT on every op or a timeout below 1 ms.
 * Only IPC_PRIVATE sets of this process are used, plus their stale ids and
 * negative ids (other programs' kernel sets are never named).
 *
 * Output: one line per call, "N what -> result", where the result is "ok",
 * "ok V" for values that are the same on both sides, or the errno name;
 * ids, pids and indices are not printed.
 *
 * usage: fuzz_calls SEED COUNT */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#define MAX_SETS 4
#define MAX_STALE 16

static uint64_t rng_state;

static uint64_t next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return next() % n; }
static int pct(int p) { return below(100) < (uint64_t)p; }

static int sets[MAX_SETS], nsems_of[MAX_SETS], nsets;
static int stale[MAX_STALE], nstale;
static char *none_page, *ro_page, *rw_page;
static long page;

/* A pointer that is bad for a buffer of `len` bytes, or NULL. */
static void *bad_pointer(size_t len)
{
    switch (below(6)) {
    case 0: return NULL;
    case 1: return (void *)1;
    case 2: return (void *)-8L;
    case 3: return none_page;
    case 4: return rw_page + page - (len > 1 ? len / 2 : 1); /* runs into none_page */
    default: return (void *)0x1000;
    }
}

static void result(long r, const char *fmt_ok, long v)
{
    if (r == -1)
        printf(" -> %s\n", errname(errno));
    else if (fmt_ok)
        printf(" -> ok %s%ld\n", fmt_ok, v);
    else
        printf(" -> ok\n");
}

static void new_set(int n)
{
    int nsems = pct(85) ? 1 + (int)below(5)
                        : (int[]){0, -1, 32000, 32001, 65536, -2147483647 - 1}[below(6)];
    int flg = 0600 | (pct(50) ? IPC_CREAT : 0) | (pct(20) ? IPC_EXCL : 0);
    if (pct(15))
        flg |= (int)(next() & ~0777u);
    printf("%d semget(PRIVATE, %d, %#o)", n, nsems, flg);
    int id = semget(IPC_PRIVATE, nsems, flg);
    result(id, NULL, 0);
    if (id < 0)
        return;
    fprintf(stderr, "SET %d\n", id);
    if (nsems > 8 || nsets == MAX_SETS) {
        /* Big sets and extra sets go at once. */
        int r = semctl(id, 0, IPC_RMID);
        printf("%d rmid new -> %s\n", n, r == 0 ? "ok" : errname(errno));
        if (nstale < MAX_STALE)
            stale[nstale++] = id;
        return;
    }
    sets[nsets] = id;
    nsems_of[nsets++] = nsems;
}

/* A target id: a live set, a stale id or a negative one. */
static int target(int *nsems)
{
    if (nsets == 0 || pct(8)) {
        *nsems = 3;
        if (nstale > 0 && pct(60))
            return stale[below(nstale)];
        return (int[]){-1, -2147483647 - 1, -32768}[below(3)];
    }
    int i = (int)below(nsets);
    *nsems = nsems_of[i];
    return sets[i];
}

static struct sembuf *make_ops(size_t n, int nsems, int nowait)
{
    static struct sembuf ops[600];
    if (n > 600)
        n = 600;
    for (size_t i = 0; i < n; i++) {
        ops[i].sem_num = pct(90) ? (unsigned short)below(nsems) : (unsigned short)next();
        ops[i].sem_op = pct(85) ? (short)((int)below(5) - 2) : (short)next();
        ops[i].sem_flg = (short)((pct(30) ? SEM_UNDO : 0) | (pct(10) ? (int)(next() & 0xffff) : 0));
        if (nowait)
            ops[i].sem_flg |= IPC_NOWAIT;
    }
    return ops;
}

static void call_semop(int n, int timed, int raw)
{
    int nsems;
    int id = target(&nsems);
    size_t nsops = pct(85) ? 1 + below(4)
                           : (size_t[]){0, 500, 501, (size_t)1 << 32 | 1, (size_t)-1, 65536}[below(6)];
    struct timespec ts = {0, 0};
    const struct timespec *tp = NULL;
    int may_block = 0;
    if (timed) {
        switch (below(6)) {
        case 0: tp = NULL; break;
        case 1: tp = bad_pointer(sizeof ts); break;
        case 2: ts.tv_sec = -1; tp = &ts; break;
        case 3: ts.tv_nsec = pct(50) ? 1000000000 : -1; tp = &ts; break;
        case 4: ts.tv_sec = 0x7fffffffffffffffL; ts.tv_nsec = 999999999; tp = &ts; break;
        default: ts.tv_nsec = (long)below(500000); tp = &ts; may_block = 1; break;
        }
    }
    struct sembuf *ops = make_ops(nsops, nsems, !may_block || pct(50));
    void *p = ops;
    if (pct(12))
        p = bad_pointer(nsops * sizeof *ops);
    printf("%d %s%s(nsops=%zu%s%s)", n, raw ? "SYS_" : "", timed ? "semtimedop" : "semop",
           nsops, p == ops ? "" : ", bad sops", timed ? (tp == &ts ? ", ts" : tp ? ", bad ts" : ", no ts") : "");
    long r;
    if (raw)
        r = timed ? syscall(SYS_semtimedop, id, p, nsops, tp) : syscall(SYS_semop, id, p, nsops);
    else
        r = timed ? semtimedop(id, p, nsops, tp) : semop(id, p, nsops);
    result(r, NULL, 0);
}

static void call_semctl(int n, int raw)
{
    static const int known[] = {IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO, GETPID, GETVAL, GETALL,
                                GETNCNT, GETZCNT, SETVAL, SETALL, SEM_STAT, SEM_INFO, SEM_STAT_ANY};
    int nsems;
    int id = target(&nsems);
    int cmd = known[below(14)];
    if (cmd == IPC_RMID && pct(80))
        cmd = GETVAL;
    if (pct(10))
        cmd = (int[]){-1, 4, 10, 21, 99, 0x100 | GETVAL, 0x100 | IPC_STAT, (int)next()}[below(8)];
    int semnum = pct(85) ? (int)below(nsems) : (int[]){-1, nsems, 65536, (int)next()}[below(4)];
    if (cmd == SEM_STAT || cmd == SEM_STAT_ANY)
        id = id >= 0 ? (id & 0x7fff) : id;
    struct semid_ds ds;
    struct seminfo si;
    unsigned short vals[70000 / 2];
    memset(&ds, 0, sizeof ds);
    memset(&si, 0, sizeof si);
    memset(vals, 0, sizeof vals);
    unsigned long arg = 0;
    const char *argd = "";
    int bad = pct(15);
    switch (cmd) {
    case IPC_STAT: case SEM_STAT: case SEM_STAT_ANY:
        arg = (unsigned long)(bad ? (pct(30) ? (void *)ro_page : bad_pointer(sizeof ds)) : &ds);
        break;
    case IPC_SET:
        ds.sem_perm.uid = pct(20) ? (uid_t)-1 : 0;
        ds.sem_perm.gid = pct(20) ? (gid_t)-1 : 0;
        ds.sem_perm.mode = pct(30) ? (unsigned short)next() : 0600;
        arg = (unsigned long)(bad ? bad_pointer(sizeof ds) : &ds);
        break;
    case IPC_INFO: case SEM_INFO:
        arg = (unsigned long)(bad ? (pct(30) ? (void *)ro_page : bad_pointer(sizeof si)) : &si);
        break;
    case GETALL:
        arg = (unsigned long)(bad ? (pct(30) ? (void *)ro_page : bad_pointer(nsems * 2)) : vals);
        break;
    case SETALL:
        for (int i = 0; i < nsems && i < 35000; i++)
            vals[i] = pct(95) ? (unsigned short)below(4) : (unsigned short)next();
        arg = (unsigned long)(bad ? bad_pointer(nsems * 2) : vals);
        break;
    case SETVAL:
        arg = (unsigned long)(unsigned int)(pct(80) ? (int)below(4)
                                            : (int[]){-1, 32768, 65536, (int)next()}[below(4)]);
        break;
    default:
        arg = pct(50) ? 0 : (unsigned long)bad_pointer(8);
        argd = ", junk arg";
        break;
    }
    if (bad)
        argd = ", bad pointer";
    printf("%d %ssemctl(semnum=%d, cmd=%d%s)", n, raw ? "SYS_" : "", semnum, cmd, argd);
    long r = raw ? syscall(SYS_semctl, id, semnum, cmd, arg) : semctl(id, semnum, cmd, arg);
    if (r == -1) {
        printf(" -> %s\n", errname(errno));
        return;
    }
    switch (cmd) {
    case GETVAL: case GETNCNT: case GETZCNT:
        printf(" -> ok %ld\n", r);
        break;
    case GETPID:
        printf(" -> ok %s\n", r == getpid() ? "self" : r == 0 ? "0" : "other");
        break;
    case IPC_STAT: case SEM_STAT: case SEM_STAT_ANY:
        if (arg == (unsigned long)&ds)
            printf(" -> ok mode=%o nsems=%lu\n", ds.sem_perm.mode & 0777, (unsigned long)ds.sem_nsems);
        else
            printf(" -> ok\n");
        break;
    case IPC_INFO: case SEM_INFO:
        if (arg == (unsigned long)&si)
            printf(" -> ok msl=%d opm=%d vmx=%d\n", si.semmsl, si.semopm, si.semvmx);
        else
            printf(" -> ok\n");
        break;
    case GETALL:
        printf(" -> ok");
        if (arg == (unsigned long)vals)
            for (int i = 0; i < nsems; i++)
                printf(" %u", vals[i]);
        printf("\n");
        break;
    case IPC_RMID:
        printf(" -> ok\n");
        for (int i = 0; i < nsets; i++)
            if (sets[i] == id) {
                if (nstale < MAX_STALE)
                    stale[nstale++] = id;
                sets[i] = sets[--nsets];
                nsems_of[i] = nsems_of[nsets];
                break;
            }
        break;
    default:
        printf(" -> ok %ld\n", r);
        break;
    }
}

int main(int argc, char **argv)
{
    alarm(120);
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(argc == 3);
    rng_state = strtoull(argv[1], NULL, 0);
    long count = strtol(argv[2], NULL, 0);
    page = sysconf(_SC_PAGESIZE);
    char *block = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(block != MAP_FAILED);
    rw_page = block;
    none_page = block + page;
    ro_page = block + 2 * page;
    CHECK(mprotect(none_page, page, PROT_NONE) == 0);
    CHECK(mprotect(ro_page, page, PROT_READ) == 0);
    for (long n = 0; n < count; n++) {
        if (nsets == 0 || pct(6)) {
            new_set((int)n);
            continue;
        }
        int raw = pct(30);
        switch (below(10)) {
        case 0: case 1: case 2: call_semop((int)n, 0, raw); break;
        case 3: case 4: case 5: call_semop((int)n, 1, raw); break;
        default: call_semctl((int)n, raw); break;
        }
    }
    for (int i = 0; i < nsets; i++) {
        unsigned short vals[8] = {0};
        int r = semctl(sets[i], 0, GETALL, vals);
        printf("final set %d:", i);
        if (r == 0)
            for (int k = 0; k < nsems_of[i]; k++)
                printf(" %u", vals[k]);
        else
            printf(" %s", errname(errno));
        printf("\n");
        semctl(sets[i], 0, IPC_RMID);
    }
    printf("done\n");
    return 0;
}
