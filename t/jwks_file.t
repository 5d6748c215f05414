# TeleportJWKSFile: keys read from a file at startup, no fetch.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id);

plan tests => 2 * ACCEPT_CHECKS + REJECT_CHECKS * 2, need_module('cgid');

my $static = test_key('rsa-static');
my $main = test_key('rsa-main');

expect_accepted('key from file', path => '/jwksfile/env',
    token => mint(key => $static, kid => key_id($static)));
expect_accepted('kid-less token, key from file', path => '/jwksfile/env',
    token => mint(key => $static));
expect_rejected('key not in file', path => '/jwksfile/env',
    token => mint(key => $main, kid => key_id($main)), reason => 'unknown_kid');
expect_rejected('kid-less token, key not in file', path => '/jwksfile/env',
    token => mint(key => $main), reason => 'bad_signature');
