/* Argument checks and their order (SEMANTICS.md C and F), bad pointers
 * (which must give EFAULT, not a crash), unknown semctl commands, and the
 * raw syscall() forms. Every line is "label: result"; the test runs this
 * program against the kernel and under LD_PRELOAD and compares the output.
 *
 * usage: errors */
#include "common.h"
#include <pthread.h>
#include <sys/mman.h>

#define IPC_64_BIT 0x100

/* Runs on a stack of its own whose top is followed by an inaccessible
 * page: pointers that run off the top of the stack must give EFAULT. */
static int thread_set;
static void *top_of_stack_thread(void *top)
{
    struct sembuf up = {0, 1, 0};
    TRY("thread semop off stack top", semop(thread_set, (struct sembuf *)((char *)top - 2), 1));
    TRY("thread semtimedop timeout off stack top",
        semtimedop(thread_set, &up, 1, (struct timespec *)((char *)top - 8)));
    TRY("thread SETALL off stack top", semctl(thread_set, 0, SETALL, (char *)top - 2));
    TRY("thread semop on stack", semop(thread_set, &up, 1));
    return NULL;
}

static void run_top_of_stack_thread(int id)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size = 64 * 1024;
    char *block = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(block != MAP_FAILED);
    CHECK(mprotect(block + size, page, PROT_NONE) == 0);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstack(&attr, block, size) == 0);
    thread_set = id;
    pthread_t t;
    CHECK(pthread_create(&t, &attr, top_of_stack_thread, block + size) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    pthread_attr_destroy(&attr);
}

int main(void)
{
    alarm(60);
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *bad = (void *)1;

    struct seminfo si;
    union semun arg = {.__buf = &si};
    CHECK(semctl(0, 0, IPC_INFO, arg) >= 0);
    size_t too_many = (size_t)si.semopm + 1;
    printf("info: semvmx=%d semaem=%d\n", si.semvmx, si.semaem);

    int id = semget(IPC_PRIVATE, 2, 0600);
    CHECK(id >= 0);
    int stale = semget(IPC_PRIVATE, 1, 0600);
    CHECK(stale >= 0);
    CHECK(semctl(stale, 0, IPC_RMID) == 0);

    /* A page whose second half is followed by an inaccessible page, and a
     * read-only page. */
    long page = sysconf(_SC_PAGESIZE);
    char *pages = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(pages != MAP_FAILED);
    CHECK(mprotect(pages + page, page, PROT_NONE) == 0);
    CHECK(mprotect(pages + 2 * page, page, PROT_READ) == 0);
    struct sembuf *edge = (struct sembuf *)(pages + page - sizeof(struct sembuf));
    *edge = (struct sembuf){0, 1, 0};
    void *readonly = pages + 2 * page;

    struct sembuf up = {0, 1, 0};
    struct sembuf down_nowait = {0, -1, IPC_NOWAIT};
    struct sembuf down = {0, -1, 0};
    struct sembuf far = {5, 1, 0};
    struct timespec zero = {0, 0}, neg = {-1, 0}, big_ns = {0, 1000000000};

    /* semop / semtimedop argument order. */
    TRY("semop NULL,0", semop(id, NULL, 0));
    TRY("semop bad,0", semop(id, bad, 0));
    TRY("semop bad,1", semop(id, bad, 1));
    TRY("semop bad,semopm+1", semop(id, bad, too_many));
    TRY("semop -1 bad", semop(-1, bad, 1));
    TRY("semop -1 good", semop(-1, &up, 1));
    TRY("semop stale", semop(stale, &up, 1));
    TRY("semop straddling", semop(id, edge, 2));
    TRY("semop last-before-guard", semop(id, edge, 1));
    TRY("semop efbig", semop(id, &far, 1));
    TRY("semop stale efbig", semop(stale, &far, 1));
    TRY("semtimedop bad timeout", semtimedop(id, &up, 1, bad));
    TRY("semtimedop bad timeout,0 ops", semtimedop(id, bad, 0, bad));
    TRY("semtimedop bad timeout,too many", semtimedop(id, bad, too_many, bad));
    TRY("semtimedop negative timeout", semtimedop(id, &up, 1, &neg));
    TRY("semtimedop tv_nsec=1e9", semtimedop(id, &up, 1, &big_ns));
    TRY("semtimedop -1 negative timeout", semtimedop(-1, &up, 1, &neg));
    TRY("semctl setval 0", ({ union semun a = {.val = 0}; semctl(id, 0, SETVAL, a); }));
    TRY("semop nowait would block", semop(id, &down_nowait, 1));
    TRY("semtimedop zero timeout", semtimedop(id, &down, 1, &zero));

    /* semctl with bad buffers: lookup errors first, EFAULT at the copy. */
    TRY("IPC_STAT bad", semctl(id, 0, IPC_STAT, bad));
    TRY("IPC_STAT stale bad", semctl(stale, 0, IPC_STAT, bad));
    TRY("IPC_STAT -1 bad", semctl(-1, 0, IPC_STAT, bad));
    TRY("IPC_STAT readonly", semctl(id, 0, IPC_STAT, readonly));
    TRY("SEM_STAT bad", semctl(id & 0x7fff, 0, SEM_STAT, bad));
    TRY("SEM_STAT_ANY bad", semctl(id & 0x7fff, 0, SEM_STAT_ANY, bad));
    TRY("IPC_SET bad", semctl(id, 0, IPC_SET, bad));
    TRY("IPC_SET -1 bad", semctl(-1, 0, IPC_SET, bad));
    TRY("GETALL bad", semctl(id, 0, GETALL, bad));
    TRY("GETALL stale bad", semctl(stale, 0, GETALL, bad));
    TRY("GETALL readonly", semctl(id, 0, GETALL, readonly));
    TRY("SETALL bad", semctl(id, 0, SETALL, bad));
    TRY("SETALL stale bad", semctl(stale, 0, SETALL, bad));
    TRY("IPC_INFO bad", semctl(id, 0, IPC_INFO, bad));
    TRY("SEM_INFO bad", semctl(id, 0, SEM_INFO, bad));
    TRY("IPC_INFO -1 bad", semctl(-1, 0, IPC_INFO, bad));

    /* Unknown commands, and semid < 0 before everything. */
    TRY("cmd -1", semctl(id, 0, -1));
    TRY("cmd 4", semctl(id, 0, 4));
    TRY("cmd 10", semctl(id, 0, 10));
    TRY("cmd 21", semctl(id, 0, 21));
    TRY("cmd 99", semctl(id, 0, 99));
    TRY("cmd IPC_64|GETVAL", semctl(id, 0, IPC_64_BIT | GETVAL));
    TRY("cmd IPC_64|IPC_STAT", semctl(id, 0, IPC_64_BIT | IPC_STAT, bad));
    TRY("cmd IPC_64|IPC_RMID", semctl(id, 0, IPC_64_BIT | IPC_RMID));
    TRY("setval -1 40000", ({ union semun a = {.val = 40000}; semctl(-1, 0, SETVAL, a); }));
    TRY("setval 40000", ({ union semun a = {.val = 40000}; semctl(id, 0, SETVAL, a); }));
    TRY("setval -1", ({ union semun a = {.val = -1}; semctl(id, 0, SETVAL, a); }));
    TRY("setval semnum 2", ({ union semun a = {.val = 1}; semctl(id, 2, SETVAL, a); }));
    TRY("setval stale 40000", ({ union semun a = {.val = 40000}; semctl(stale, 0, SETVAL, a); }));
    TRY("getval semnum 2", semctl(id, 2, GETVAL));
    TRY("getval semnum -1", semctl(id, -1, GETVAL));
    TRY("getval stale", semctl(stale, 0, GETVAL));

    /* The raw system calls. */
    TRY("SYS_semop bad", syscall(SYS_semop, id, bad, 1));
    TRY("SYS_semop NULL,0", syscall(SYS_semop, id, NULL, 0));
    TRY("SYS_semop nsops 2^32+1", syscall(SYS_semop, id, bad, 0x100000001L));
    TRY("SYS_semtimedop bad timeout", syscall(SYS_semtimedop, id, &up, 1, bad));
    TRY("SYS_semctl IPC_STAT bad", syscall(SYS_semctl, id, 0, IPC_STAT, bad));
    TRY("SYS_semctl GETALL bad", syscall(SYS_semctl, id, 0, GETALL, bad));
    TRY("SYS_semctl IPC_64|GETVAL", syscall(SYS_semctl, id, 0, IPC_64_BIT | GETVAL, 0));
    TRY("SYS_semctl cmd 99", syscall(SYS_semctl, id, 0, 99, 0));
    TRY("SYS_semctl -1 GETVAL", syscall(SYS_semctl, -1, 0, GETVAL, 0));
    TRY("SYS_semctl SETVAL high bits", syscall(SYS_semctl, id, 1, SETVAL, 0x100000005L));
    printf("value after high-bits SETVAL: %ld\n", syscall(SYS_semctl, id, 1, GETVAL, 0));
    TRY("SYS_semget nsems -1", syscall(SYS_semget, IPC_PRIVATE, -1, 0600));

    run_top_of_stack_thread(id);

    /* Correct calls, to check the structures' layout. */
    unsigned short vals[2] = {3, 4};
    arg.array = vals;
    TRY("SETALL", semctl(id, 0, SETALL, arg));
    struct sembuf two[2] = {{0, -1, 0}, {1, 2, 0}};
    TRY("semop two", semop(id, two, 2));
    unsigned short got[2] = {0, 0};
    arg.array = got;
    TRY("GETALL", semctl(id, 0, GETALL, arg));
    printf("values: %u %u\n", got[0], got[1]);
    printf("getpid is me: %d\n", semctl(id, 1, GETPID) == getpid());
    struct semid_ds ds;
    memset(&ds, 0xa5, sizeof ds);
    arg.buf = &ds;
    TRY("IPC_STAT", semctl(id, 0, IPC_STAT, arg));
    printf("stat: key=%d mode=%o nsems=%lu uid_ok=%d cuid_ok=%d gid_ok=%d otime_set=%d ctime_set=%d\n",
           (int)ds.sem_perm.__key, (unsigned)ds.sem_perm.mode & 0777,
           (unsigned long)ds.sem_nsems, ds.sem_perm.uid == geteuid(),
           ds.sem_perm.cuid == geteuid(), ds.sem_perm.cgid == getegid(),
           ds.sem_otime > 0, ds.sem_ctime > 0);
    ds.sem_perm.mode = 0640 | 0170000;
    TRY("IPC_SET", semctl(id, 0, IPC_SET, arg));
    memset(&ds, 0, sizeof ds);
    TRY("IPC_STAT again", semctl(id, 0, IPC_STAT, arg));
    printf("stat: mode=%o\n", (unsigned)ds.sem_perm.mode);
    printf("SEM_STAT gives id: %d\n", semctl(id & 0x7fff, 0, SEM_STAT, arg) == id);
    printf("SEM_STAT_ANY gives id: %d\n", semctl(id & 0x7fff, 0, SEM_STAT_ANY, arg) == id);
    memset(&si, 0, sizeof si);
    arg.__buf = &si;
    TRY("SEM_INFO", semctl(id, 0, SEM_INFO, arg));
    printf("SEM_INFO counts us: %d\n", si.semusz >= 1 && si.semaem >= 2);

    TRY("IPC_RMID", semctl(id, 0, IPC_RMID));
    TRY("IPC_RMID again", semctl(id, 0, IPC_RMID));
    TRY("GETVAL removed", semctl(id, 0, GETVAL));
    TRY("semop removed", semop(id, &up, 1));
    printf("done\n");
    return 0;
}
