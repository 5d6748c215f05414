# Graceful restarts under load: an httpd instance of its own (4 child
# processes at start, the suite's MPM) answers 2000 requests with a valid
# token over 4 kept-alive connections and gets two graceful restarts
# (SIGUSR1) while they run.  Every response is 200: a connection that a
# restart closes is retried, and no request gets 401 or 503 from the
# module.  Each new generation of children starts with the keys its parent
# fetched at startup.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16);
use Teleport::CacheTest qw(create_scenario scenario_url count_lines
    parallel_requests start_httpd stop_process);

use constant CLIENTS             => 4;
use constant REQUESTS_PER_CLIENT => 500;
use constant TIME_LIMIT          => 30;
# Responses received before each graceful restart.
use constant RESTART_AFTER       => (400, 1200);

my $name = 'cache-graceful';
my $url = scenario_url($name);
my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

create_scenario($name, jwks_v16($key));
my $instance = start_httpd(name => 'graceful', scenario => $name,
                           processes => CLIENTS, max_processes => 2 * CLIENTS);
is(jwks_hits($name), 1, 'startup: one fetch by the parent');

my @restarted_at;
my @results = parallel_requests(
    clients    => CLIENTS,
    requests   => REQUESTS_PER_CLIENT,
    time_limit => TIME_LIMIT,
    base_url   => $instance->{url},
    retries    => 3,
    request    => sub { ('/app/ok.txt', $token) },
    on_start   => sub {
        my ($responses) = @_;
        my $deadline = Time::HiRes::time() + TIME_LIMIT;
        for my $after (RESTART_AFTER) {
            Time::HiRes::sleep(0.01) while $responses->() < $after && Time::HiRes::time() < $deadline;
            push @restarted_at, $responses->();
            kill 'USR1', $instance->{pid};
        }
    },
);

open my $fh, '<', $instance->{error_log} or die "cannot read $instance->{error_log}: $!";
chomp(my @log = <$fh>);
close $fh;

my %codes;
$codes{ $_->{code} }++ for @results;
my @retried = grep { $_->{tries} > 1 } @results;
my %failures;
$failures{ $_->{failure} // 'none' }++ for grep { $_->{code} != 200 } @results;
note('graceful restarts after ' . join(' and ', @restarted_at) . ' responses; got '
    . join(', ', map { "$_ x $codes{$_}" } sort keys %codes) . ' after '
    . scalar(@retried) . ' retried requests; expected 200 x ' . CLIENTS * REQUESTS_PER_CLIENT);
note("connection error: $_ x $failures{$_}") for sort keys %failures;

is(scalar @results, CLIENTS * REQUESTS_PER_CLIENT, 'every request sent within ' . TIME_LIMIT . ' s');
is($codes{200} // 0, scalar @results, 'every request 200, after retries of closed connections');
is($codes{401} // 0, 0, 'no 401');
is($codes{503} // 0, 0, 'no 503');
# prefork logs "Graceful restart requested", event and worker "SIGUSR1
# received.  Doing graceful restart".
is(scalar(grep { /graceful restart/i } @log), 2, 'two graceful restarts logged');
ok($restarted_at[-1] < scalar @results, 'second restart before the last response');
is(count_lines(\@log, 'TLP030: '), 0, 'no token rejected');
is(count_lines(\@log, 'TLP031: '), 0, 'no 503 logged');
is(count_lines(\@log, 'TLP019: startup fetch of ' . $url), 3, 'one startup fetch per generation');
is(jwks_hits($name), 3, 'three fetches in total: one per generation');

stop_process($instance->{pid});
done_testing();
