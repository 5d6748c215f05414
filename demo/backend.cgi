#!/usr/bin/perl
# The demo's backend application: a CGI program that prints the request
# headers it received, as rebuilt from the HTTP_* variables of RFC 3875.
use strict;
use warnings;

# Values longer than this are cut, so a token does not fill the screen.
my $max_value_length = 48;

print "Content-Type: text/plain; charset=utf-8\r\n\r\n";
print "Backend on 127.0.0.1:8081 received:\n";
print "  $ENV{REQUEST_METHOD} $ENV{REQUEST_URI} $ENV{SERVER_PROTOCOL}\n";

for my $variable (sort grep { /^HTTP_/ } keys %ENV) {
    my $name = join '-', map { ucfirst lc } split /_/, substr($variable, 5);
    my $value = $ENV{$variable};
    if (length $value > $max_value_length) {
        $value = substr($value, 0, $max_value_length)
            . '... (' . length($value) . ' bytes)';
    }
    print "  $name: $value\n";
}
