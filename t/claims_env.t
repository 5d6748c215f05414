# The identity a CGI program receives: REMOTE_USER, AUTH_TYPE and the TELEPORT_*
# variables, for tokens without roles and traits (rewrite.jwt_claims: none)
# and with many of both.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $key = test_key('rsa-main');
my $kid = key_id($key);
my $expires = time + 600;

my @roles = map { "role-$_" } 1 .. 40;
my %traits = (
    logins               => [ 'alice', 'root', 'ubuntu' ],
    'kubernetes_groups'  => [ 'system:masters', 'developers' ],
    'aws-role-arns'      => [ 'arn:aws:iam::123456789012:role/dev' ],
    'email.address'      => [ 'alice@example.com' ],
    'db_users'           => [],
);
my %trait_variables = (
    TELEPORT_TRAIT_LOGINS            => 'alice,root,ubuntu',
    TELEPORT_TRAIT_KUBERNETES_GROUPS => 'system:masters,developers',
    TELEPORT_TRAIT_AWS_ROLE_ARNS     => 'arn:aws:iam::123456789012:role/dev',
    TELEPORT_TRAIT_EMAIL_ADDRESS     => 'alice@example.com',
);

my %expected = (
    AUTH_TYPE        => 'Teleport',
    TELEPORT_USER    => 'alice',
    TELEPORT_SUB     => 'alice',
    TELEPORT_ISSUER  => 'teleport.example.com',
    TELEPORT_EXPIRES => $expires,
    TELEPORT_KID     => $kid,
    TELEPORT_ROLES   => join(',', @roles),
);
plan tests => 3 * ACCEPT_CHECKS + keys(%expected) + keys(%trait_variables) + 3 + 3 + 1,
    need_module('cgid');

my $full = response_env(expect_accepted('many roles and traits', path => '/claims/env',
    token => mint(key => $key, kid => $kid, claims => teleport_claims(
        sub => 'alice', roles => \@roles, traits => \%traits, exp => $expires))));
for my $name (sort keys %expected) {
    is($full->{$name}, $expected{$name}, "many roles and traits: $name");
}
for my $name (sort keys %trait_variables) {
    is($full->{$name}, $trait_variables{$name}, "many roles and traits: $name");
}
ok(!defined $full->{TELEPORT_TRAIT_DB_USERS} || $full->{TELEPORT_TRAIT_DB_USERS} eq '',
    'many roles and traits: empty trait is empty or unset');
my @unexpected = grep { /^TELEPORT_/ && !exists $expected{$_} && !exists $trait_variables{$_}
    && $_ ne 'TELEPORT_TRAIT_DB_USERS' } sort keys %$full;
is("@unexpected", '', 'many roles and traits: no other TELEPORT_ variables');
is($full->{HTTP_X_TELEPORT_USER}, undef, 'many roles and traits: no X- header invented');

my $none = response_env(expect_accepted('jwt_claims none', path => '/claims/env',
    token => mint(key => $key, kid => $kid,
        claims => teleport_claims(roles => undef, traits => undef))));
is($none->{TELEPORT_USER}, 'alice', 'jwt_claims none: TELEPORT_USER');
ok(!defined $none->{TELEPORT_ROLES} || $none->{TELEPORT_ROLES} eq '',
    'jwt_claims none: TELEPORT_ROLES empty or unset');
is(scalar(grep { /^TELEPORT_TRAIT_/ } keys %$none), 0, 'jwt_claims none: no trait variables');

# Teleport serialises a user without roles as "roles": null and without
# traits as "traits": {}.
my $null_payload = JSON->new->canonical->encode(teleport_claims(roles => undef, traits => {}))
    =~ s/^\{/{"roles":null,/r;
my $null = response_env(expect_accepted('roles null, traits empty', path => '/claims/env',
    token => mint(key => $key, kid => $kid, claims => $null_payload)));
ok(!defined $null->{TELEPORT_ROLES} || $null->{TELEPORT_ROLES} eq '',
    'roles null: TELEPORT_ROLES empty or unset');
