/* SEM_UNDO of processes that die without running any exit code.
 *
 * 1. A child takes the semaphore with SEM_UNDO and is killed with SIGKILL
 *    while the parent is blocked on it (a second child kills it once
 *    GETNCNT shows the parent waiting): the parent gets the semaphore.
 * 2. The same with a child that leaves through _exit().
 * 3. The same with a child that returns normally through exit().
 * The parent waits with semtimedop and a long timeout, so a lost undo is
 * EAGAIN, not a hang.
 *
 * usage: undo_kill */
#include "common.h"

static int id;

static void take_and_hold(int how, int notify_fd)
{
    struct sembuf p = {0, -1, SEM_UNDO};
    CHECK(semop(id, &p, 1) == 0);
    CHECK(write(notify_fd, "x", 1) == 1);
    if (how == 1)
        for (;;)
            pause();
    /* Wait until the parent sleeps on the semaphore, then leave. */
    double deadline = now_seconds() + 30;
    while (semctl(id, 0, GETNCNT) != 1) {
        CHECK(now_seconds() < deadline);
        usleep(1000);
    }
    if (how == 2)
        _exit(0);
    exit(0);
}

static void phase(int how)
{
    union semun arg = {.val = 1};
    CHECK(semctl(id, 0, SETVAL, arg) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t holder = fork();
    CHECK(holder >= 0);
    if (holder == 0)
        take_and_hold(how, fds[1]);
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    CHECK(semctl(id, 0, GETVAL) == 0);

    pid_t killer = -1;
    if (how == 1) {
        killer = fork();
        CHECK(killer >= 0);
        if (killer == 0) {
            double deadline = now_seconds() + 30;
            while (semctl(id, 0, GETNCNT) != 1) {
                if (now_seconds() > deadline)
                    _exit(2);
                usleep(1000);
            }
            kill(holder, SIGKILL);
            _exit(0);
        }
    }

    struct timespec ts = {30, 0};
    struct sembuf p = {0, -1, 0};
    int r = semtimedop(id, &p, 1, &ts);
    printf("phase %d: semtimedop %d %s", how, r, errname(r < 0 ? errno : 0));

    int status;
    CHECK(waitpid(holder, &status, 0) == holder);
    if (how == 1)
        printf(" holder %s", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
                                 ? "killed" : "not-killed");
    else
        printf(" holder %s", WIFEXITED(status) && WEXITSTATUS(status) == 0
                                 ? "exited" : "failed");
    if (killer > 0) {
        CHECK(waitpid(killer, &status, 0) == killer);
        printf(" killer %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    printf(" value %d\n", semctl(id, 0, GETVAL));
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    alarm(120);
    setvbuf(stdout, NULL, _IONBF, 0);
    id = semget(IPC_PRIVATE, 1, 0600);
    CHECK(id >= 0);
    phase(1);
    phase(2);
    phase(3);
    CHECK(semctl(id, 0, IPC_RMID) == 0);
    printf("done\n");
    return 0;
}
