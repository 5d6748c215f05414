# A WebSocket upgrade through "ProxyPass ... upgrade=websocket" (mod_proxy_http)
# to an echo server on 127.0.0.1 (t/lib/Teleport/AuthzWebSocket.pm), at
# /authz-ws/ of t/conf/extra_authz.conf.in with TeleportForwardHeaders On.
# Without a valid token the upgrade gets 401 and never reaches the backend.
# With one it gets 101, messages echo through the tunnel, and the upgrade
# request that the backend received carries the verified identity headers,
# not the ones the client sent.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Teleport::Authz qw(websocket_port);
use Teleport::AuthzWebSocket qw(open_websocket send_frame read_frame);
use Teleport::Test;
use Teleport::Token qw(mint key_id tamper_payload);

plan tests => 16, need_module('proxy', 'proxy_http');

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));
my $tampered = tamper_payload($token, sub { $_[0]{username} = 'root' });
# zz_token_not_logged.t checks every token listed there.
Teleport::Test::record_tokens($token, $tampered);

my $server = Teleport::AuthzWebSocket->start(port => websocket_port(), lifetime => 60);
END { $server->stop if $server }
my $httpd_port = Apache::Test::vars('port');

sub upgrade {
    my ($name, @headers) = @_;
    my ($status, $head, $socket) = open_websocket(port => $httpd_port,
        path => '/authz-ws/socket', headers => \@headers);
    note("$name: got $status\n$head");
    return ($status, $head, $socket);
}

my ($status, $head) = upgrade('no token');
is($status, 401, 'no token: status');
like($head, qr/^WWW-Authenticate: Teleport realm=/mi, 'no token: challenge');

($status) = upgrade('tampered token', 'Teleport-Jwt-Assertion' => $tampered);
is($status, 401, 'tampered token: status');

my $socket;
($status, $head, $socket) = upgrade('valid token', 'Teleport-Jwt-Assertion' => $token,
    'X-Teleport-User' => 'mallory');
is($status, 101, 'valid token: status');
like($head, qr/^Upgrade: websocket\r?$/mi, 'valid token: Upgrade header');

my ($opcode, $payload) = read_frame($socket);
my $received = eval { JSON->new->decode($payload // '') } || {};
note('backend received: ' . ($payload // '(nothing)'));
is($opcode, 1, 'backend description: text message');
is($received->{connection}, 1, 'backend reached by the valid upgrade only');
my $headers = $received->{headers} || {};
is(lc($headers->{upgrade} // ''), 'websocket', 'backend: Upgrade header');
is($headers->{'x-teleport-user'}, 'alice', 'backend: X-Teleport-User');
is($headers->{'x-teleport-roles'}, 'access,editor', 'backend: X-Teleport-Roles');
is($headers->{'teleport-jwt-assertion'}, '(present)', 'backend: assertion forwarded');

send_frame($socket, 1, 'hello through the tunnel', 1);
($opcode, $payload) = read_frame($socket);
is($opcode, 1, 'short message: text opcode');
is($payload, 'hello through the tunnel', 'short message: echoed');

my $long = join '', map { chr(32 + $_ % 95) } 1 .. 1000;
send_frame($socket, 2, $long, 1);
($opcode, $payload) = read_frame($socket);
is($opcode, 2, 'long message: binary opcode');
is($payload, $long, 'long message: echoed');

send_frame($socket, 8, pack('n', 1000), 1);
($opcode) = read_frame($socket);
is($opcode, 8, 'close: answered');
close $socket;
