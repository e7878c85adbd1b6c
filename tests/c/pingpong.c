/* Two forked children pass a token back and forth with blocking semop
 * (strict alternation checked through a shared counter), then a producer
 * and a consumer child move numbers through a bounded buffer guarded by
 * "empty"/"full"/"mutex" semaphores, the consumer using semtimedop.
 *
 * usage: pingpong KEY|private ROUNDS
 * With a key the set is created with it and the program stops once at
 * "ready set ID" until a line arrives on stdin. */
#include "common.h"
#include <sys/mman.h>

static void op(int id, unsigned short num, short delta)
{
    struct sembuf b = {num, delta, 0};
    CHECK(semop(id, &b, 1) == 0);
}

#define SLOTS 8

struct ring {
    volatile long turn;
    volatile long slot[SLOTS];
    volatile long head, tail;
};

static int wait_ok(pid_t pid)
{
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child %d failed: status %#x\n", (int)pid, status);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    key_t key = key_arg(argc, argv);
    long rounds = argc > 2 ? atol(argv[2]) : 1000;
    alarm(120);

    int id = semget(key, 2, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    if (key != IPC_PRIVATE)
        handshake("set", id);

    struct ring *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(r != MAP_FAILED);
    r->turn = 0;

    /* Ping-pong: A waits on 0 and posts 1, B waits on 1 and posts 0. */
    pid_t a = fork();
    CHECK(a >= 0);
    if (a == 0) {
        for (long i = 0; i < rounds; i++) {
            op(id, 0, -1);
            if (r->turn != 2 * i)
                _exit(3);
            r->turn = 2 * i + 1;
            op(id, 1, 1);
        }
        _exit(0);
    }
    pid_t b = fork();
    CHECK(b >= 0);
    if (b == 0) {
        for (long i = 0; i < rounds; i++) {
            op(id, 1, -1);
            if (r->turn != 2 * i + 1)
                _exit(4);
            r->turn = 2 * i + 2;
            op(id, 0, 1);
        }
        _exit(0);
    }
    op(id, 0, 1);
    int ok = wait_ok(a) & wait_ok(b);
    CHECK(ok);
    /* B's last post is still on semaphore 0. */
    CHECK(semctl(id, 0, GETVAL) == 1);
    CHECK(semctl(id, 1, GETVAL) == 0);
    printf("pingpong %ld\n", r->turn);

    /* Bounded buffer: 0 = empty slots, 1 = full slots, 2 = mutex. */
    int bb = semget(IPC_PRIVATE, 3, 0600);
    CHECK(bb >= 0);
    unsigned short init[3] = {SLOTS, 0, 1};
    union semun arg = {.array = init};
    CHECK(semctl(bb, 0, SETALL, arg) == 0);
    r->head = r->tail = 0;
    pid_t prod = fork();
    CHECK(prod >= 0);
    if (prod == 0) {
        for (long i = 1; i <= rounds; i++) {
            struct sembuf take_empty[2] = {{0, -1, 0}, {2, -1, SEM_UNDO}};
            CHECK(semop(bb, take_empty, 2) == 0);
            r->slot[r->head % SLOTS] = i;
            r->head++;
            struct sembuf give_full[2] = {{2, 1, SEM_UNDO}, {1, 1, 0}};
            CHECK(semop(bb, give_full, 2) == 0);
        }
        _exit(0);
    }
    pid_t cons = fork();
    CHECK(cons >= 0);
    if (cons == 0) {
        long sum = 0;
        for (long i = 1; i <= rounds; i++) {
            struct timespec ts = {60, 0};
            struct sembuf take_full[2] = {{1, -1, 0}, {2, -1, SEM_UNDO}};
            CHECK(semtimedop(bb, take_full, 2, &ts) == 0);
            long v = r->slot[r->tail % SLOTS];
            r->tail++;
            if (v != i)
                _exit(5);
            sum += v;
            struct sembuf give_empty[2] = {{2, 1, SEM_UNDO}, {0, 1, 0}};
            CHECK(semop(bb, give_empty, 2) == 0);
        }
        _exit(sum == rounds * (rounds + 1) / 2 ? 0 : 6);
    }
    ok = wait_ok(prod) & wait_ok(cons);
    CHECK(ok);
    unsigned short out[3];
    arg.array = out;
    CHECK(semctl(bb, 0, GETALL, arg) == 0);
    printf("buffer %ld %u %u %u\n", r->tail, out[0], out[1], out[2]);

    CHECK(semctl(bb, 0, IPC_RMID) == 0);
    CHECK(semctl(id, 0, IPC_RMID) == 0);
    printf("done\n");
    return 0;
}
