#!/usr/bin/perl
# CGI for the tests: prints, as JSON, the identity httpd passes to CGI
# programs (REMOTE_USER, AUTH_TYPE, TELEPORT_*) and the X-* request headers
# a proxy sets.  It prints whether an assertion header arrived, never its
# value.
use strict;
use warnings;
use JSON::PP ();

my %shown;
for my $name (sort keys %ENV) {
    next unless $name =~ /^(?:TELEPORT_|HTTP_X_)/
        || $name eq 'REMOTE_USER' || $name eq 'AUTH_TYPE';
    $shown{$name} = $ENV{$name};
}
$shown{HAS_ASSERTION_HEADER} = exists $ENV{HTTP_TELEPORT_JWT_ASSERTION} ? 1 : 0;
$shown{HAS_AUTHORIZATION_HEADER} = exists $ENV{HTTP_AUTHORIZATION} ? 1 : 0;

print "Content-Type: application/json\r\n\r\n";
print JSON::PP->new->canonical->encode(\%shown), "\n";
