/* Permission checks and their order relative to EFAULT, seen by an
 * unprivileged process: SETALL on a write-only set (the library must find
 * the set's size without read permission), GETALL/SETALL with bad buffers
 * on sets the caller may not read or write (EACCES comes first), IPC_RMID
 * by a stranger (EPERM). Must be started as root: the sets are created by
 * root, then a forked child switches to uid/gid 65534. Output is compared
 * with the kernel's.
 *
 * usage: perms */
#include "common.h"
#include <grp.h>

int main(void)
{
    alarm(60);
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(geteuid() == 0);
    void *bad = (void *)1;
    int wo = semget(IPC_PRIVATE, 2, 0602);  /* others: write only */
    int ro = semget(IPC_PRIVATE, 2, 0604);  /* others: read only */
    int none = semget(IPC_PRIVATE, 2, 0600); /* others: nothing */
    CHECK(wo >= 0 && ro >= 0 && none >= 0);

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        CHECK(setgroups(0, NULL) == 0);
        CHECK(setgid(65534) == 0);
        CHECK(setuid(65534) == 0);
        unsigned short vals[2] = {3, 4}, got[2];
        union semun set = {.array = vals}, get = {.array = got};
        struct semid_ds ds;
        union semun stat = {.buf = &ds};
        struct sembuf up = {0, 1, 0}, zero = {0, 0, IPC_NOWAIT};

        TRY("wo SETALL", semctl(wo, 0, SETALL, set));
        TRY("wo SETALL bad", semctl(wo, 0, SETALL, bad));
        TRY("wo GETALL", semctl(wo, 0, GETALL, get));
        TRY("wo GETALL bad", semctl(wo, 0, GETALL, bad));
        TRY("wo IPC_STAT", semctl(wo, 0, IPC_STAT, stat));
        TRY("wo GETVAL", semctl(wo, 0, GETVAL));
        TRY("wo SETVAL", ({ union semun a = {.val = 2}; semctl(wo, 1, SETVAL, a); }));
        TRY("wo semop up", semop(wo, &up, 1));
        TRY("wo semop zero", semop(wo, &zero, 1));
        TRY("wo SEM_STAT", semctl(wo & 0x7fff, 0, SEM_STAT, stat));
        TRY("wo SEM_STAT_ANY", semctl(wo & 0x7fff, 0, SEM_STAT_ANY, stat));

        TRY("ro SETALL", semctl(ro, 0, SETALL, set));
        TRY("ro SETALL bad", semctl(ro, 0, SETALL, bad));
        TRY("ro GETALL", semctl(ro, 0, GETALL, get));
        TRY("ro GETALL bad", semctl(ro, 0, GETALL, bad));
        TRY("ro IPC_STAT bad", semctl(ro, 0, IPC_STAT, bad));
        TRY("ro semop up", semop(ro, &up, 1));
        TRY("ro semop zero", semop(ro, &zero, 1));
        TRY("ro IPC_RMID", semctl(ro, 0, IPC_RMID));
        TRY("ro IPC_SET bad", semctl(ro, 0, IPC_SET, bad));
        TRY("ro IPC_SET", semctl(ro, 0, IPC_SET, stat));

        TRY("none SETALL bad", semctl(none, 0, SETALL, bad));
        TRY("none GETALL bad", semctl(none, 0, GETALL, bad));
        TRY("none IPC_STAT bad", semctl(none, 0, IPC_STAT, bad));
        TRY("none GETVAL", semctl(none, 0, GETVAL));
        TRY("none semop up", semop(none, &up, 1));
        TRY("none SEM_STAT_ANY", semctl(none & 0x7fff, 0, SEM_STAT_ANY, stat));
        TRY("none IPC_SET", semctl(none, 0, IPC_SET, stat));
        TRY("none IPC_RMID", semctl(none, 0, IPC_RMID));
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unsigned short got[2];
    union semun get = {.array = got};
    CHECK(semctl(wo, 0, GETALL, get) == 0);
    printf("wo values: %u %u\n", got[0], got[1]);
    CHECK(semctl(wo, 0, IPC_RMID) == 0);
    CHECK(semctl(ro, 0, IPC_RMID) == 0);
    CHECK(semctl(none, 0, IPC_RMID) == 0);
    printf("done\n");
    return 0;
}
