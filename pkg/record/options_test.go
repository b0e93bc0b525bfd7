package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
)

// TestNewRefusesHoldsPastTheAckWait: events held for company are not yet
// kept from redelivery, so a recorder may not hold them for more than half
// the ack wait; nor may a batch wait for its flush longer than a third.
func TestNewRefusesHoldsPastTheAckWait(t *testing.T) {
	for _, o := range []record.Options{
		{Flush: time.Second, MaxDelay: 31 * time.Second, AckWait: time.Minute},
		{Flush: 30 * time.Second, AckWait: time.Minute},
	} {
		_, err := record.New(nil, nil, o)
		require.ErrorIs(t, err, record.ErrConfig, "%+v", o)
	}
	// The default hold, 5 flushes, is capped at half the ack wait.
	_, err := record.New(nil, nil, record.Options{Flush: 3 * time.Second, AckWait: 10 * time.Second})
	assert.NoError(t, err)
}
