# "Require teleport-role", "teleport-trait" and "teleport-claim", alone and
# combined with <RequireAll>, <RequireAny>, <RequireNone>, "Require user",
# "Require ip" and AuthMerging (locations in t/conf/extra_authz.conf.in).
# The locations set AuthzSendForbiddenOnFailure On, so a token that
# verifies but that the rules deny gets 403.  The module logs the reason at
# debug and never the token.  Tokens without roles or traits, as Teleport
# sends them with rewrite.jwt_claims "none" or as Go encodes empty lists
# (null), are denied the same way, never answered with 401 or 500.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Authz qw(denial_lines lines_containing make_site);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $key = test_key('rsa-main');
my $kid = key_id($key);

# A token for alice (roles access and editor, trait logins alice and root)
# with the given claims replaced; an undef value removes the claim.
sub token_with { mint(key => $key, kid => $kid, claims => teleport_claims(@_)) }

# A token whose claims $edit changed, for values that teleport_claims
# cannot express, such as JSON null.
sub token_edited {
    my ($edit) = @_;
    my $claims = teleport_claims();
    $edit->($claims);
    return mint(key => $key, kid => $kid, claims => $claims);
}

my %token = (
    editor       => token_with(),
    access_only  => token_with(roles => [ 'access' ], traits => { logins => [ 'alice' ] }),
    admin        => token_with(roles => [ 'admin' ], traits => { logins => [ 'alice' ] }),
    banned       => token_with(roles => [ 'editor', 'banned' ], traits => { logins => [ 'alice' ] }),
    editor_no_root => token_with(traits => { logins => [ 'alice' ] }),
    bob_access   => token_with(sub => 'bob', username => 'bob', roles => [ 'access' ],
                               traits => { logins => [ 'bob' ] }),
    bob_editor   => token_with(sub => 'bob', username => 'bob'),
    carol_access => token_with(sub => 'carol', username => 'carol', roles => [ 'access' ]),
    dave_editor  => token_with(sub => 'dave', username => 'dave'),
    editor_upper => token_with(roles => [ 'Editor' ]),
    team         => token_with(traits => { groups => [ 'dev', 'platform team' ] }),
    team_word    => token_with(traits => { groups => [ 'platform' ] }),
    aud_array    => token_with(aud => [ 'http://authz-wide.example', 'http://localhost:8080' ]),
    aud_wide     => token_with(aud => 'http://authz-wide.example'),
    aud_wide_array => token_with(aud => [ 'http://authz-wide.example' ]),
    # rewrite.jwt_claims: none
    claims_none  => token_with(roles => undef, traits => undef),
    roles_null   => token_edited(sub { $_[0]{roles} = undef }),
    traits_null  => token_edited(sub { $_[0]{traits} = undef }),
    logins_null  => token_edited(sub { $_[0]{traits}{logins} = undef }),
);

# name, path (under the location, env.pl), token name or undef, expected
# status, then for 200 the expected REMOTE_USER (undef: none), for 403
# whether a Require teleport-* rule is what denies (its debug line).
my @cases = (
    [ 'role editor',                  '/authz-role/env', 'editor',       200, 'alice' ],
    [ 'role admin',                   '/authz-role/env', 'admin',        200, 'alice' ],
    [ 'role access only',             '/authz-role/env', 'access_only',  403, 1 ],
    [ 'role compared with case',      '/authz-role/env', 'editor_upper', 403, 1 ],
    [ 'role: no token',               '/authz-role/env', undef,          401 ],
    [ 'trait logins root',            '/authz-trait/env', 'editor',      200, 'alice' ],
    [ 'trait without root',           '/authz-trait/env', 'editor_no_root', 403, 1 ],
    [ 'trait value with space',       '/authz-trait-space/env', 'team',  200, 'alice' ],
    [ 'trait value one word of it',   '/authz-trait-space/env', 'team_word', 403, 1 ],
    [ 'trait absent',                 '/authz-trait-space/env', 'editor', 403, 1 ],
    [ 'claim sub, second value',      '/authz-claim-sub/env', 'editor',  200, 'alice' ],
    [ 'claim sub bob',                '/authz-claim-sub/env', 'bob_editor', 403, 1 ],
    [ 'claim aud string',             '/authz-claim-aud/env', 'editor',  200, 'alice' ],
    [ 'claim aud array',              '/authz-claim-aud/env', 'aud_array', 200, 'alice' ],
    [ 'claim aud other string',       '/authz-claim-aud/env', 'aud_wide', 403, 1 ],
    [ 'claim aud other array',        '/authz-claim-aud/env', 'aud_wide_array', 403, 1 ],
    [ 'claim roles array',            '/authz-claim-roles/env', 'editor', 200, 'alice' ],
    [ 'claim roles without editor',   '/authz-claim-roles/env', 'access_only', 403, 1 ],
    [ 'claim of object type',         '/authz-claim-object/env', 'editor', 403, 1 ],

    [ 'RequireAll: both',             '/authz-all/env', 'editor',        200, 'alice' ],
    [ 'RequireAll: role only',        '/authz-all/env', 'editor_no_root', 403, 1 ],
    [ 'RequireAll: trait only',       '/authz-all/env', 'access_only',   403, 1 ],
    [ 'RequireAny: claim',            '/authz-any/env', 'editor',        200, 'alice' ],
    [ 'RequireAny: role',             '/authz-any/env', 'bob_editor',    403, 1 ],
    [ 'RequireAny: neither',          '/authz-any/env', 'bob_access',    403, 1 ],
    [ 'RequireNone: neither',         '/authz-none/env', 'editor_no_root', 200, 'alice' ],
    [ 'RequireNone: banned role',     '/authz-none/env', 'banned',       403, 0 ],
    [ 'RequireNone: trait root',      '/authz-none/env', 'editor',       403, 0 ],
    [ 'user and role',                '/authz-user-all/env', 'bob_editor', 200, 'bob' ],
    [ 'user without role',            '/authz-user-all/env', 'bob_access', 403, 1 ],
    [ 'role without user',            '/authz-user-all/env', 'dave_editor', 403, 0 ],
    [ 'user or role: user',           '/authz-user-any/env', 'carol_access', 200, 'carol' ],
    [ 'user or role: role',           '/authz-user-any/env', 'admin',    200, 'alice' ],
    [ 'user or role: neither',        '/authz-user-any/env', 'editor',   403, 1 ],
    [ 'ip 127.0.0.1 and role',        '/authz-ip-all/env', 'editor',     200, 'alice' ],
    [ 'ip 127.0.0.1, no role',        '/authz-ip-all/env', 'access_only', 403, 1 ],
    [ 'ip 127.0.0.1: no token',       '/authz-ip-all/env', undef,        401 ],
    [ 'ip 192.0.2.1 and role',        '/authz-ip-other-all/env', 'editor', 403, 0 ],
    [ 'ip 192.0.2.1 or role: role',   '/authz-ip-other-any/env', 'admin', 200, 'alice' ],
    [ 'ip 192.0.2.1 or role: no role', '/authz-ip-other-any/env', 'editor', 403, 1 ],
    [ 'ip 192.0.2.1 or role: no token', '/authz-ip-other-any/env', undef, 401 ],
    # Require ip grants before any authentication: httpd never asks the
    # module, so the request has no user even with a token.
    [ 'ip 127.0.0.1 or role: no token', '/authz-ip-any/env', undef,      200, undef ],
    [ 'ip 127.0.0.1 or role: token',  '/authz-ip-any/env', 'admin',      200, undef ],

    [ 'AuthMerging parent',           '/authz-merge/env', 'editor_no_root', 200, 'alice' ],
    [ 'AuthMerging parent denies',    '/authz-merge/env', 'access_only', 403, 1 ],
    [ 'AuthMerging And: both',        '/authz-merge/and/env', 'editor',  200, 'alice' ],
    [ 'AuthMerging And: parent only', '/authz-merge/and/env', 'editor_no_root', 403, 1 ],
    [ 'AuthMerging And: child only',  '/authz-merge/and/env', 'access_only', 403, 1 ],
    [ 'AuthMerging Or: parent rule',  '/authz-merge/or/env', 'editor_no_root', 200, 'alice' ],
    [ 'AuthMerging Or: child rule',   '/authz-merge/or/env', 'bob_access', 200, 'bob' ],
    [ 'AuthMerging Or: neither',      '/authz-merge/or/env', 'access_only', 403, 1 ],
    [ 'AuthMerging Off: child rule',  '/authz-merge/off/env', 'bob_access', 200, 'bob' ],
    [ 'AuthMerging Off: parent rule', '/authz-merge/off/env', 'editor',  403, 1 ],

    [ 'jwt_claims none: role',        '/authz-role/env', 'claims_none',  403, 1 ],
    [ 'jwt_claims none: trait',       '/authz-trait/env', 'claims_none', 403, 1 ],
    [ 'jwt_claims none: roles claim', '/authz-claim-roles/env', 'claims_none', 403, 1 ],
    [ 'jwt_claims none: RequireAll',  '/authz-all/env', 'claims_none',   403, 1 ],
    [ 'jwt_claims none: valid-user',  '/authz-none/env', 'claims_none',  200, 'alice' ],
    [ 'roles null: role',             '/authz-role/env', 'roles_null',   403, 1 ],
    [ 'roles null: roles claim',      '/authz-claim-roles/env', 'roles_null', 403, 1 ],
    [ 'traits null: trait',           '/authz-trait/env', 'traits_null', 403, 1 ],
    [ 'trait logins null',            '/authz-trait/env', 'logins_null', 403, 1 ],
);

my $checks = 0;
for my $case (@cases) {
    my (undef, undef, undef, $status, $detail) = @$case;
    $checks += $status == 403 ? 4 + ($detail ? 2 : 0) : 3;
}
plan tests => $checks, need_module('cgid', 'authz_user', 'authz_host');

make_site();

for my $case (@cases) {
    my ($name, $path, $token_name, $status, $detail) = @$case;
    my $token = defined $token_name ? $token{$token_name} : undef;
    my $offset = error_log_offset();
    my $response = send_request(path => $path, token => $token);
    my @log = error_log_since($offset);
    my $env = response_env($response);
    note("$name: got " . $response->code . ' user ' . ($env->{REMOTE_USER} // '(none)')
        . "; expected $status");
    note("$name: error_log: $_") for @log;

    is($response->code, $status, "$name: status");
    is(scalar rejection_lines(@log), 0, "$name: no token rejected");
    if ($status == 200) {
        is($env->{REMOTE_USER}, $detail, "$name: REMOTE_USER");
    }
    elsif ($status == 403) {
        my @denials = denial_lines(@log);
        is(scalar(grep { /\[auth_teleport:/ && !/\[auth_teleport:debug\]/ } @log),
           0, "$name: module logs at debug only");
        is(scalar lines_containing($token, @log), 0, "$name: token not logged");
        # Without $detail, "Require user", "Require ip" or <RequireNone>
        # decides, and a teleport-* rule need not have denied.
        if ($detail) {
            ok(@denials >= 1, "$name: denial reason logged at debug");
            like($denials[-1] // '', qr/ denied for user \S+: /,
                 "$name: denial names user and reason");
        }
    }
    else {
        like($response->header('WWW-Authenticate') // '', qr/^Teleport realm=/,
             "$name: challenge");
    }
}
