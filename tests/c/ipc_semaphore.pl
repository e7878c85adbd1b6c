# Perl's IPC::Semaphore (which calls the C library's semget/semop/semctl)
# under LD_PRELOAD=libshmsem_preload.so.
#
# usage: perl ipc_semaphore.pl KEY
# Stops at "ready set ID" until a line arrives on stdin, then removes the set.
use strict;
use warnings;
use IPC::SysV qw(IPC_CREAT IPC_EXCL IPC_NOWAIT S_IRUSR S_IWUSR);
use IPC::Semaphore;

$| = 1;
alarm 60;
my $key = hex(shift @ARGV);

my $sem = IPC::Semaphore->new($key, 3, S_IRUSR | S_IWUSR | IPC_CREAT | IPC_EXCL)
    or die "new: $!";
$sem->setall(1, 2, 3) or die "setall: $!";
$sem->op(0, -1, IPC_NOWAIT, 1, 2, 0) or die "op: $!";
my @values = $sem->getall;
print "values @values\n";
$sem->setval(2, 9) or die "setval: $!";
print "val2 ", $sem->getval(2), "\n";
my $stat = $sem->stat or die "stat: $!";
printf "nsems %d mode %o\n", $stat->nsems, $stat->mode & 0777;
print "ncnt ", $sem->getncnt(0), " pid_is_me ", ($sem->getpid(1) == $$ ? 1 : 0), "\n";
my $r = $sem->op(0, -1, IPC_NOWAIT);
print "nowait ", ($r ? "ok" : $!{EAGAIN} ? "EAGAIN" : "error $!"), "\n";
print "ready set ", $sem->id, "\n";
my $go = <STDIN>;
$sem->remove or die "remove: $!";
print "removed ", (defined(IPC::Semaphore->new($key, 0, 0)) ? "no" : "yes"), "\n";
