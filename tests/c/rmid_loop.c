/* A process that creates and removes sets for ever, as the kernel lets it:
 * semget(IPC_PRIVATE) / IPC_STAT / GETVAL / semop / GETVAL / IPC_RMID.
 *
 * usage: rmid_loop CYCLES EVERY
 * Between two cycles, every EVERY cycles and after the last, prints
 * "ready cycle K" and waits for a line on stdin (tests/reclaim.rs measures
 * this process meanwhile). Any failed call exits with status 99. */
#include "common.h"

int main(int argc, char **argv)
{
    CHECK(argc == 3);
    int cycles = atoi(argv[1]), every = atoi(argv[2]);
    CHECK(cycles > 0 && every > 0);
    alarm(300);
    for (int k = 0; k < cycles; k++) {
        if (k % every == 0)
            handshake("cycle", k);
        int id = semget(IPC_PRIVATE, 1, 0600);
        CHECK(id >= 0);
        struct semid_ds ds;
        union semun arg = {.buf = &ds};
        CHECK(semctl(id, 0, IPC_STAT, arg) == 0);
        CHECK(ds.sem_nsems == 1);
        CHECK(semctl(id, 0, GETVAL) == 0);
        struct sembuf up = {0, 1, 0};
        CHECK(semop(id, &up, 1) == 0);
        CHECK(semctl(id, 0, GETVAL) == 1);
        CHECK(semctl(id, 0, IPC_RMID) == 0);
    }
    handshake("cycle", cycles);
    return 0;
}
