# The identity reaching a backend behind mod_proxy: forwarded with
# mod_headers ("RequestHeader set", which replaces what the client sent) or
# with TeleportForwardHeaders On.  Client-supplied X-Teleport-* headers never
# reach the backend.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use MIME::Base64 qw(decode_base64url);
use Teleport::Test;
use Teleport::Token qw(mint key_id);

plan tests => 16, need_module('proxy', 'proxy_http', 'headers');

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

# Request $path and return the status and the headers the backend received.
sub backend_headers {
    my ($name, %args) = @_;
    my $response = send_request(%args);
    my $echo = eval { JSON->new->decode($response->decoded_content) } || {};
    note("$name: got " . $response->code . ', backend headers '
        . JSON->new->canonical->encode($echo->{headers} || {}));
    return ($response->code, $echo->{headers} || {});
}

my ($status, $headers) = backend_headers('mod_headers',
    path => '/proxy/', token => $token);
is($status, 200, 'mod_headers: status');
is($headers->{'x-remote-user'}, 'alice', 'mod_headers: X-Remote-User');
is($headers->{'x-remote-roles'}, 'access,editor', 'mod_headers: X-Remote-Roles');

($status, $headers) = backend_headers('client sends identity headers',
    path => '/proxy/', token => $token,
    headers => [ 'X-Remote-User' => 'mallory', 'X-Teleport-User' => 'mallory',
                 ':X_Teleport_Roles' => 'admin', ':X_Control_Header' => 'kept' ]);
is($status, 200, 'client sends identity headers: status');
is($headers->{'x-remote-user'}, 'alice', 'client sends identity headers: X-Remote-User replaced');
is($headers->{'x-teleport-user'}, undef, 'client sends identity headers: X-Teleport-User removed');
is($headers->{'x_control_header'}, 'kept', 'client sends identity headers: other underscore header kept');
is($headers->{'x_teleport_roles'}, undef, 'client sends identity headers: X_Teleport_Roles removed');

($status, $headers) = backend_headers('TeleportForwardHeaders',
    path => '/proxy-forward/', token => $token,
    headers => [ 'X-Teleport-User' => 'mallory' ]);
is($status, 200, 'TeleportForwardHeaders: status');
is($headers->{'x-teleport-user'}, 'alice', 'TeleportForwardHeaders: X-Teleport-User');
is($headers->{'x-teleport-roles'}, 'access,editor', 'TeleportForwardHeaders: X-Teleport-Roles');
my $traits = eval { JSON->new->decode(decode_base64url($headers->{'x-teleport-traits'} // '')) };
is_deeply($traits, { logins => [ 'alice', 'root' ] }, 'TeleportForwardHeaders: X-Teleport-Traits');

# mod_proxy drops the headers that Connection names; a client must not be
# able to remove the trusted values that way.
($status, $headers) = backend_headers('Connection names X-Teleport-User',
    path => '/proxy-forward/', token => $token,
    headers => [ Connection => 'X-Teleport-User' ]);
is($status, 200, 'Connection names X-Teleport-User: status');
is($headers->{'x-teleport-user'}, 'alice', 'Connection names X-Teleport-User: value kept');

($status, $headers) = backend_headers('no token', path => '/proxy/',
    headers => [ 'X-Remote-User' => 'alice' ]);
is($status, 401, 'no token: status');
is(scalar keys %$headers, 0, 'no token: backend not reached');
